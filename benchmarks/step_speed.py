"""Streams one device holds: the engine's batched model step (encoder chunk + default search) timed
at growing batch sizes, on the CPU or a GPU.

For each batch size B, ``--steps`` steps of the engine's ``BatchStepper`` on B slots, each fed a
window of real speech features (one espeak-ng utterance synthesized here, or ``--audio``), after
``--warmup`` untimed steps (CUDA start-up, allocator). A step covers one chunk of audio for each of
the B streams, so B streams run in real time while a step takes at most the chunk's duration;
``real_time_streams`` = B x chunk seconds / step seconds is how many streams that batch size would
carry with steps back to back (the model alone: no gRPC, fbank or results). The GPU figure the
capacity issue asks for: run on a machine with one, e.g. ``benchmarks/gpu.sh``. Usage:
    python benchmarks/step_speed.py [--device cuda] [--batches 1 8 32 128 256] [--steps 20]
        [--model DIR] [--int8] [--report reports/step_speed.json]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from report import write_report  # benchmarks/report.py (scripts run from this folder)

from server.engine.batch import BatchStepper, Window
from server.engine.decoder import StreamDecoder, StreamOptions
from server.engine.registry import resolve_device
from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.model.quantize import quantize_for_cpu, read_ranges
from server.search.loading import load_model_and_search

SENTENCE = (
    "the committee met on tuesday morning to discuss the budget for the coming year and the chairman "
    "promised a full report by the end of the month"
)


def speech(sample_rate: int, audio: Path | None) -> np.ndarray:
    """Mono float32 speech at ``sample_rate``: ``audio`` or one espeak-ng sentence."""
    if audio is None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "speech.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), SENTENCE], check=True, capture_output=True)
            samples, rate = sf.read(path, dtype="float32")
    else:
        samples, rate = sf.read(audio, dtype="float32", always_2d=True)
        samples = samples[:, 0]
    return soxr.resample(samples, rate, sample_rate).astype(np.float32) if rate != sample_rate else samples


def windows(decoder: StreamDecoder, samples: np.ndarray) -> list[Window]:
    """The model windows one stream of ``samples`` makes (the engine's own front end)."""
    decoder.accept_audio(samples)
    out = []
    while decoder.has_window():
        out.append(decoder.next_window())
    return out


def time_batch(stepper: BatchStepper, stream_windows: list[Window], batch: int, steps: int, warmup: int) -> float:
    """Mean seconds of one step of ``batch`` slots (each slot fed the same stream's windows in turn)."""
    cuda = stepper.device.startswith("cuda")
    for index in range(warmup + steps):
        if index == warmup:
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
        window = stream_windows[index % len(stream_windows)]
        stepper.step([(slot, window) for slot in range(batch)])  # ends with a device sync (the step's lists)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when one is usable)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128, 256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--audio", type=Path, help="speech file (default: one espeak-ng sentence)")
    parser.add_argument("--int8", action="store_true", help="the server's --int8 (CPU only)")
    parser.add_argument("--report", type=Path, default=Path("reports/step_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, search = load_model_and_search(args.model, device=device)
    if args.int8:
        if device != "cpu":
            raise SystemExit("step_speed: --int8 is a CPU option")
        ranges = read_ranges(args.model)
        if ranges is None:
            raise SystemExit(f"step_speed: {args.model} has no int8 ranges (asr-train calibrate-int8)")
        quantize_for_cpu(model, ranges)
    samples = speech(model.config.sample_rate, args.audio)
    stream_windows = windows(StreamDecoder(model, search, StreamOptions()), samples)
    chunk_seconds = model.config.encoder.chunk_size * model.frame_shift_ms / 1000.0
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    runs = []
    for batch in args.batches:
        stepper = BatchStepper(model, search, capacity=batch, device=device)
        seconds = time_batch(stepper, stream_windows, batch, args.steps, args.warmup)
        run = {
            "device": name,
            "batch": batch,
            "step_ms": round(1e3 * seconds, 2),
            "real_time_streams": round(batch * chunk_seconds / seconds, 1),
            "seconds_per_stream_second": round(seconds / (batch * chunk_seconds), 5),
        }
        print(
            f"{name} batch {batch:4d}: step {run['step_ms']:8.2f} ms, "
            f"{run['real_time_streams']:8.1f} real-time streams, "
            f"{run['seconds_per_stream_second']:.5f} s per stream-second"
        )
        runs.append(run)
    write_report(args.report, model, runs)


if __name__ == "__main__":
    main()
