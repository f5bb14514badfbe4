"""``asr-train eval``: WER/CER of a model on a manifest, streaming (default) or offline.

Streaming mode decodes through the engine's own per-stream decoder and batch stepper
(``server.engine.offline``), chunk by chunk with endpointing, as the server does; offline
mode decodes whole utterances with full context. The last printed line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import soxr
import torch

from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams, final_text, in_pieces
from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.model.frames import fbank_frames_per_second
from server.model.frontend import compute_fbank
from server.model.transducer import StreamingTransducer
from server.search.loading import load_model_and_search
from server.search.options import Search
from server.search.utterances import final_hypotheses, search_utterances
from training.manifest import read_audio, read_manifest
from training.search_arguments import add_search_arguments, describe_search, search_from_arguments
from training.text_normalize import normalize_text

# Audio piece the streaming mode feeds each stream per round (100 ms at 16 kHz), as a client would send.
STREAM_PIECE_SAMPLES = 1600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: bundled)")
    parser.add_argument("--manifest", type=Path, required=True, help="JSON lines {audio, text[, language]}")
    parser.add_argument("--mode", choices=["streaming", "offline"], default="streaming")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per decoding batch")
    add_search_arguments(parser)


def pad_features(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """fbank matrices (T_i, 80) -> zero-padded batch (B, T_max, 80) and lengths (B,)."""
    return torch.nn.utils.rnn.pad_sequence(features, batch_first=True), torch.tensor([f.shape[0] for f in features])


def audio_batches(
    model: StreamingTransducer, manifest: Path, batch_seconds: float
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """The manifest's utterances as (reference, float32 samples at the model's rate), ~``batch_seconds`` a batch."""
    rate = model.config.sample_rate
    pending: list[tuple[str, np.ndarray]] = []
    for utterance in read_manifest(manifest):
        samples, source_rate = read_audio(utterance.audio)
        if samples.ndim > 1:
            samples = samples.mean(axis=1)
        if source_rate != rate:
            samples = soxr.resample(samples, source_rate, rate)
        pending.append((utterance.text, samples.astype(np.float32, copy=False)))
        if sum(s.size for _, s in pending) / rate >= batch_seconds:
            yield pending
            pending = []
    if pending:
        yield pending


def feature_batches(
    model: StreamingTransducer, manifest: Path, batch_seconds: float
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """The manifest's utterances as (reference, fbank (T, 80)), about ``batch_seconds`` of audio a batch."""
    frames_per_second = fbank_frames_per_second(model.config.features)
    pending: list[tuple[str, torch.Tensor]] = []
    for utterance in read_manifest(manifest):
        samples, rate = read_audio(utterance.audio)
        pending.append((utterance.text, torch.from_numpy(compute_fbank(samples, rate, model.config.features))))
        if sum(f.shape[0] for _, f in pending) / frames_per_second >= batch_seconds:
            yield pending
            pending = []
    if pending:
        yield pending


def _transcripts(
    model: StreamingTransducer, search: Search, manifest: Path, streaming: bool, batch_seconds: float
) -> Iterator[tuple[str, str, float]]:
    """(reference, hypothesis, audio seconds) of each utterance."""
    if streaming:
        options = StreamOptions(interim_results=False)
        for audio_batch in audio_batches(model, manifest, batch_seconds):
            pieces = [in_pieces(samples, STREAM_PIECE_SAMPLES) for _, samples in audio_batch]
            for (reference, samples), updates in zip(
                audio_batch, decode_streams(model, search, pieces, options), strict=True
            ):
                yield reference, final_text(updates), samples.size / model.config.sample_rate
        return
    frames_per_second = fbank_frames_per_second(model.config.features)
    for feature_batch in feature_batches(model, manifest, batch_seconds):
        padded, lengths = pad_features([f for _, f in feature_batch])
        tokens = final_hypotheses(model, search, search_utterances(model, search, padded, lengths, streaming=False))
        for (reference, features), hypothesis in zip(feature_batch, tokens, strict=True):
            text = model.tokenizer.decode([t for t, _ in hypothesis])
            yield reference, text, features.shape[0] / frames_per_second


def evaluate(
    model: StreamingTransducer,
    search: Search,
    manifest: Path,
    streaming: bool,
    batch_seconds: float = 120.0,
    print_lines: bool = True,
) -> dict:
    references, hypotheses = [], []
    started = time.perf_counter()
    audio_seconds = 0.0
    for reference, hypothesis, seconds in _transcripts(model, search, manifest, streaming, batch_seconds):
        audio_seconds += seconds
        references.append(normalize_text(reference))
        hypotheses.append(normalize_text(hypothesis))
        if print_lines:
            print(json.dumps({"ref": references[-1], "hyp": hypotheses[-1]}))
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
    model, default_search = load_model_and_search(args.model)
    search = search_from_arguments(model, default_search, args)
    summary = evaluate(model, search, args.manifest, args.mode == "streaming", args.batch_seconds)
    summary["search"] = describe_search(search)
    summary["model"] = model.config.name
    print(json.dumps(summary))
    return 0
