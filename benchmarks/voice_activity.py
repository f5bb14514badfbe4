"""How close are voice activity events to where the voice really starts and stops?

Builds scenes of two held-out sentences between silences (``training/data/heldout_sentences.txt``,
espeak-ng voices and speeds drawn by ``--seed``), and knows where each sentence's voice is (the
first and last sample above 2% of its peak). Then measures, per sentence, the error of:

* ``model``: the server's events (``server.api.voice_activity``): an utterance begins at its first
  token and ends at the end of its final, from the bundled model's streamed results (the same
  per-stream decoder the server runs, ``server.engine.offline.decode_streams``, with its default
  endpointing);
* ``silero``: Silero VAD v5 (the ``silero-vad`` wheel, if installed; not a project dependency),
  offline speech timestamps of the whole scene at its default settings, as a reference.

Prints and writes (``--report``) the mean signed error (bias) and the mean, 90th-percentile and
largest absolute errors of BEGIN and END, the share within the issue's ±0.3 s, and the compute
per second of audio of each. ``--sentences dev`` draws generated training-mixture text instead of
the held-out sentences: choose settings there, report on the held-out ones.

Usage:
    python benchmarks/voice_activity.py [--scenes 40] [--seed 0] [--report reports/voice_activity.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.api.voice_activity import VoiceActivity  # noqa: E402
from server.engine.decoder import StreamOptions, Update  # noqa: E402
from server.engine.offline import decode_streams, in_pieces  # noqa: E402
from server.model.checkpoint import DEFAULT_MODEL_DIR  # noqa: E402
from server.search.loading import load_model_and_search  # noqa: E402
from training.lm import DEFAULT_LM_MIXTURE, generate_text  # noqa: E402

RATE = 16000
VOICES = ["en-us", "en", "en-us+f2", "en+m3", "en-us+f4", "en+klatt", "en-gb-x-rp"]
TOLERANCE_S = 0.3


def speech(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng speech at 16 kHz, float32."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), text], check=True, capture_output=True
    ).stdout
    import io

    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(samples, rate, RATE).astype(np.float32)


def scene(rng: random.Random, sentences: list[str]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """silence, sentence, silence, sentence, silence; and each sentence's voice span (s)."""
    parts, spans, position = [], [], 0
    for index in range(2):
        silence = np.zeros(int(RATE * rng.uniform(0.8, 2.0)), np.float32)
        voiced = speech(rng.choice(sentences), rng.choice(VOICES), rng.randint(140, 190))
        loud = np.nonzero(np.abs(voiced) > 0.02 * np.abs(voiced).max())[0]
        position += silence.size
        spans.append(((position + loud[0]) / RATE, (position + loud[-1]) / RATE))
        position += voiced.size
        parts += [silence, voiced]
        if index == 1:
            parts.append(np.zeros(int(RATE * 1.0), np.float32))
    return np.concatenate(parts), spans


def model_events(updates: list[Update]) -> list[tuple[float, float]]:
    """(begin, end) per utterance from the server's voice activity tracker."""
    voice = VoiceActivity()
    begins: list[float] = []
    ends: list[float] = []
    for update in updates:
        for event, ms in voice.events(update):
            (begins if event == 2 else ends).append(ms / 1000)
    return list(zip(begins, ends, strict=False))


def silero_events(audio: np.ndarray) -> list[tuple[float, float]] | None:
    try:
        import silero_vad
        import torch
    except ImportError:
        return None
    model = silero_vad.load_silero_vad(onnx=True)
    stamps = silero_vad.get_speech_timestamps(torch.from_numpy(audio), model, sampling_rate=RATE)
    return [(s["start"] / RATE, s["end"] / RATE) for s in stamps]


def errors(found: list[tuple[float, float]], truth: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Signed begin and end errors (found minus true) of each true span against the found span
    nearest to it (a missing one counts as an error of the whole span's length)."""
    begin, end = [], []
    for start, stop in truth:
        if not found:
            begin.append(stop - start)
            end.append(stop - start)
            continue
        nearest = min(found, key=lambda span: abs(span[0] - start) + abs(span[1] - stop))
        begin.append(nearest[0] - start)
        end.append(nearest[1] - stop)
    return begin, end


def summary(values: list[float]) -> dict[str, float]:
    signed = np.asarray(values)
    array = np.abs(signed)
    return {
        "bias_s": round(float(signed.mean()), 3),
        "mean_s": round(float(array.mean()), 3),
        "p90_s": round(float(np.percentile(array, 90)), 3),
        "max_s": round(float(array.max()), 3),
        "within_tolerance": round(float((array <= TOLERANCE_S).mean()), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=Path(DEFAULT_MODEL_DIR))
    parser.add_argument("--report", type=Path, default=Path("reports/voice_activity.json"))
    parser.add_argument(
        "--sentences",
        choices=["heldout", "dev"],
        default="heldout",
        help="held-out sentences (report), or generated training-mixture text (dev: to choose settings on)",
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    if args.sentences == "dev":
        sentences = generate_text(400, DEFAULT_LM_MIXTURE, seed=args.seed + 1000)
    else:
        sentences = (ROOT / "training/data/heldout_sentences.txt").read_text().split("\n")
        sentences = [s for s in sentences if s.strip()]
    scenes = [scene(rng, sentences) for _ in range(args.scenes)]
    model, search = load_model_and_search(args.model_dir)
    audio_seconds = sum(audio.size for audio, _ in scenes) / RATE

    started = time.process_time()
    updates = decode_streams(model, search, [in_pieces(audio, 1600) for audio, _ in scenes], StreamOptions())
    model_cpu = time.process_time() - started
    results: dict[str, dict[str, object]] = {}
    begin, end = [], []
    for stream_updates, (_, truth) in zip(updates, scenes, strict=True):
        b, e = errors(model_events(stream_updates), truth)
        begin += b
        end += e
    results["model"] = {"begin": summary(begin), "end": summary(end), "cpu_s_per_audio_s": "0 (the recognizer's own)"}

    started = time.process_time()
    silero = [silero_events(audio) for audio, _ in scenes]
    silero_cpu = time.process_time() - started
    if all(found is not None for found in silero):
        begin, end = [], []
        for found, (_, truth) in zip(silero, scenes, strict=True):
            assert found is not None
            b, e = errors(found, truth)
            begin += b
            end += e
        results["silero"] = {
            "begin": summary(begin),
            "end": summary(end),
            "cpu_s_per_audio_s": round(silero_cpu / audio_seconds, 4),
        }
    report = {
        "scenes": args.scenes,
        "sentences": 2 * args.scenes,
        "audio_seconds": round(audio_seconds, 1),
        "model_decode_cpu_s_per_audio_s": round(model_cpu / audio_seconds, 4),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
