"""Decoding speed of the streaming path (fbank -> windows -> model.step), one stream or a batch.

Prints figures and writes a JSON report. Usage:
    python benchmarks/decode_speed.py --manifest data/heldout/manifest.jsonl [--model DIR]
        [--threads 1] [--streams 1] [--utterances 50] [--report reports/decode_speed.json]
With --streams N, N copies of each utterance run as one batch per step (what the server's
engine does under load); the real-time factor is compute time over total audio time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import soxr
import torch

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.frontend import FbankStream
from server.model.windowing import FeatureWindows
from training.manifest import read_audio, read_manifest


def stream_utterance(model, samples: np.ndarray, streams: int, piece: int = 1600) -> float:
    """Seconds of compute to stream ``samples`` (16 kHz) through ``streams`` identical streams."""
    fbank = FbankStream(model.config.features)
    windows = FeatureWindows(model.feature_window, model.feature_shift)
    state = model.init_state(streams)
    started = time.perf_counter()

    def run(window: np.ndarray, real: int) -> None:
        nonlocal state
        features = torch.from_numpy(window)[None].expand(streams, -1, -1).contiguous()
        state = model.step(features, torch.full((streams,), real), state).state

    for start in range(0, len(samples), piece):
        windows.push(fbank.accept(samples[start:start + piece]))
        while windows.ready():
            run(windows.pop_window(), model.feature_window)
    for window, real in windows.final_windows():
        run(window, real)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--utterances", type=int, default=50)
    parser.add_argument("--report", type=Path, default=Path("reports/decode_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    audio_seconds = compute_seconds = 0.0
    for utterance in read_manifest(args.manifest)[: args.utterances]:
        samples, rate = read_audio(utterance.audio)
        if rate != model.config.sample_rate:
            samples = soxr.resample(samples, rate, model.config.sample_rate).astype(np.float32)
        audio_seconds += len(samples) / model.config.sample_rate * args.streams
        compute_seconds += stream_utterance(model, samples, args.streams)
    report = {
        "model": model.config.name,
        "parameters": model.num_parameters,
        "threads": args.threads,
        "streams": args.streams,
        "audio_seconds": round(audio_seconds, 2),
        "compute_seconds": round(compute_seconds, 3),
        "real_time_factor": round(compute_seconds / audio_seconds, 4),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
    }
    print(json.dumps(report, indent=2))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
