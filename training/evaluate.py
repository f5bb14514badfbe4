"""``asr-train eval``: WER/CER of a model on a manifest, streaming (default) or offline.

Streaming mode decodes with the serving attention mask, which computes exactly what the
chunk-by-chunk server computes (tests/test_streaming_equivalence.py); offline mode uses
full context. The last printed line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jiwer
import torch

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.frontend import compute_fbank
from server.model.transducer import StreamingTransducer
from training.manifest import read_audio, read_manifest
from training.text_normalize import normalize_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: bundled)")
    parser.add_argument("--manifest", type=Path, required=True, help="JSON lines {audio, text[, language]}")
    parser.add_argument("--mode", choices=["streaming", "offline"], default="streaming")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per decoding batch")


def transcribe_features(model: StreamingTransducer, features: list[torch.Tensor], streaming: bool) -> list[str]:
    """Greedy transcripts of fbank matrices (T_i, 80), decoded as one padded batch."""
    lengths = torch.tensor([f.shape[0] for f in features])
    padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
    with torch.inference_mode():
        tokens = model.transcribe_batch(padded, lengths, streaming=streaming)
    return [model.tokenizer.decode([t for t, _ in hyp]) for hyp in tokens]


def evaluate(model: StreamingTransducer, manifest: Path, streaming: bool, batch_seconds: float = 120.0,
             print_lines: bool = True) -> dict:
    utterances = read_manifest(manifest)
    references, hypotheses = [], []
    started = time.perf_counter()
    audio_seconds = 0.0
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        texts = transcribe_features(model, [f for _, f in pending], streaming)
        for (reference, _), hypothesis in zip(pending, texts, strict=True):
            references.append(normalize_text(reference))
            hypotheses.append(normalize_text(hypothesis))
            if print_lines:
                print(json.dumps({"ref": references[-1], "hyp": hypotheses[-1]}))
        pending.clear()

    for utterance in utterances:
        samples, rate = read_audio(utterance.audio)
        audio_seconds += len(samples) / rate
        pending.append((utterance.text, torch.from_numpy(compute_fbank(samples, rate, model.config.features))))
        if sum(f.shape[0] for _, f in pending) / 100 >= batch_seconds:
            flush()
    if pending:
        flush()
    elapsed = time.perf_counter() - started
    # jiwer rejects empty hypotheses in some versions; an empty string is a deletion of all words.
    safe_hyps = [h if h else "<empty>" for h in hypotheses]
    return {
        "wer": jiwer.wer(references, safe_hyps),
        "cer": jiwer.cer(references, safe_hyps),
        "utterances": len(references),
        "mode": "streaming" if streaming else "offline",
        "audio_seconds": round(audio_seconds, 2),
        "real_time_factor": round(elapsed / max(audio_seconds, 1e-9), 4),
    }


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    summary = evaluate(model, args.manifest, args.mode == "streaming", args.batch_seconds)
    summary["model"] = model.config.name
    print(json.dumps(summary))
    return 0
