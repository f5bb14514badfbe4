"""How close are voice activity events to where the voice really starts and stops?

Builds scenes of two held-out sentences between silences (``training/data/heldout_sentences.txt``,
espeak-ng voices and speeds drawn by ``--seed``), and knows where each sentence's voice is (the
first and last sample above 2% of its peak). Then measures, per sentence, the error of:

* ``silero``: the server's events (``server.api.speech_detector``): Silero VAD streamed over the
  scene in 0.1-s chunks, with the settings given (``--min-silence-ms``, ``--begin-pad-ms``, ``--end-offset-ms``);
* ``model``: the rule the server used before (decision 0025): an utterance begins at its first
  token (less 40 ms) and ends at the end of its final (plus 80 ms), from the bundled model's
  streamed results (the per-stream decoder the server runs, ``server.engine.offline.decode_streams``,
  with its default endpointing).

Prints and writes (``--report``) the mean signed error (bias) and the mean, 90th-percentile and
largest absolute errors of BEGIN and END, the share within the issue's ±0.3 s, the spans found
per sentence (above 1: speech split at pauses), and the compute per second of audio of each.
``--sentences dev`` draws generated training-mixture text instead of
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

from server.api.speech_detector import DetectorSettings, DetectorState, SpeechDetector  # noqa: E402
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
    """(begin, end) per utterance by the former rule: first token less 40 ms, final's end plus 80."""
    spans: list[tuple[float, float]] = []
    begun: set[int] = set()
    began = 0.0
    for update in updates:
        for result in update.results:
            if not result.transcript:
                continue
            if result.utterance_index not in begun:
                begun.add(result.utterance_index)
                began = max(0, result.start_ms - 40) / 1000
            if result.is_final:
                spans.append((began, (result.end_ms + 80) / 1000))
    return spans


def silero_events(detector: SpeechDetector, audio: np.ndarray) -> list[tuple[float, float]]:
    """(begin, end) per span from the server's streaming detector, fed 0.1-s chunks."""
    state, edges = DetectorState(), []
    for start in range(0, audio.size, 1600):
        state, found = detector.accept(state, audio[start : start + 1600])
        edges += found
    edges += detector.finish(state)
    begins = [edge.at_ms / 1000 for edge in edges if edge.begins]
    ends = [edge.at_ms / 1000 for edge in edges if not edge.begins]
    return list(zip(begins, ends, strict=True))


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


def scored(found: list[list[tuple[float, float]]], truths: list[list[tuple[float, float]]]) -> dict[str, object]:
    begin: list[float] = []
    end: list[float] = []
    for spans, truth in zip(found, truths, strict=True):
        b, e = errors(spans, truth)
        begin += b
        end += e
    spans_per_sentence = sum(len(spans) for spans in found) / sum(len(truth) for truth in truths)
    return {"begin": summary(begin), "end": summary(end), "spans_per_sentence": round(spans_per_sentence, 3)}


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
    parser.add_argument("--min-silence-ms", type=int, default=DetectorSettings.min_silence_ms)
    parser.add_argument("--begin-pad-ms", type=int, default=DetectorSettings.begin_pad_ms)
    parser.add_argument("--end-offset-ms", type=int, default=DetectorSettings.end_offset_ms)
    parser.add_argument("--skip-model", action="store_true", help="only the Silero detector (fast, for tuning)")
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
    audio_seconds = sum(audio.size for audio, _ in scenes) / RATE
    truths = [truth for _, truth in scenes]
    results: dict[str, dict[str, object]] = {}
    model_cpu = None
    if not args.skip_model:
        model, search = load_model_and_search(args.model_dir)
        started = time.process_time()
        updates = decode_streams(model, search, [in_pieces(audio, 1600) for audio, _ in scenes], StreamOptions())
        model_cpu = round((time.process_time() - started) / audio_seconds, 4)
        results["model"] = scored([model_events(u) for u in updates], truths)
        results["model"]["cpu_s_per_audio_s"] = "0 (the recognizer's own)"

    detector = SpeechDetector(
        DetectorSettings(
            min_silence_ms=args.min_silence_ms, begin_pad_ms=args.begin_pad_ms, end_offset_ms=args.end_offset_ms
        )
    )
    started = time.process_time()
    silero = [silero_events(detector, audio) for audio, _ in scenes]
    results["silero"] = scored(silero, truths)
    results["silero"]["cpu_s_per_audio_s"] = round((time.process_time() - started) / audio_seconds, 4)
    results["silero"]["settings"] = {
        "min_silence_ms": args.min_silence_ms,
        "begin_pad_ms": args.begin_pad_ms,
        "end_offset_ms": args.end_offset_ms,
    }
    report = {
        "scenes": args.scenes,
        "sentences": 2 * args.scenes,
        "audio_seconds": round(audio_seconds, 1),
        "model_decode_cpu_s_per_audio_s": model_cpu,
        "results": results,
    }
    print(json.dumps(report, indent=1))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
