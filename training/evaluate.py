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
from dataclasses import dataclass
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
from training.manifest import Utterance, read_audio, read_manifest
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
    parser.add_argument(
        "--select-language",
        action="store_true",
        help="each utterance with its manifest language selected (language_codes); default: all languages",
    )
    add_search_arguments(parser)


def pad_features(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """fbank matrices (T_i, 80) -> zero-padded batch (B, T_max, 80) and lengths (B,)."""
    return torch.nn.utils.rnn.pad_sequence(features, batch_first=True), torch.tensor([f.shape[0] for f in features])


def audio_batches(
    model: StreamingTransducer, manifest: Path, batch_seconds: float
) -> Iterator[list[tuple[Utterance, np.ndarray]]]:
    """The manifest's utterances with their float32 samples at the model's rate, ~``batch_seconds`` a batch."""
    rate = model.config.sample_rate
    pending: list[tuple[Utterance, np.ndarray]] = []
    for utterance in read_manifest(manifest):
        samples, source_rate = read_audio(utterance.audio)
        if samples.ndim > 1:
            samples = samples.mean(axis=1)
        if source_rate != rate:
            samples = soxr.resample(samples, source_rate, rate)
        pending.append((utterance, samples.astype(np.float32, copy=False)))
        if sum(s.size for _, s in pending) / rate >= batch_seconds:
            yield pending
            pending = []
    if pending:
        yield pending


def feature_batches(
    model: StreamingTransducer, manifest: Path, batch_seconds: float
) -> Iterator[list[tuple[Utterance, torch.Tensor]]]:
    """The manifest's utterances with their features (T, 80), about ``batch_seconds`` of audio a batch."""
    frames_per_second = fbank_frames_per_second(model.config.features)
    pending: list[tuple[Utterance, torch.Tensor]] = []
    for utterance in read_manifest(manifest):
        samples, rate = read_audio(utterance.audio)
        pending.append((utterance, torch.from_numpy(compute_fbank(samples, rate, model.config.features))))
        if sum(f.shape[0] for _, f in pending) / frames_per_second >= batch_seconds:
            yield pending
            pending = []
    if pending:
        yield pending


@dataclass(frozen=True)
class Transcript:
    """One utterance's reference and hypothesis, its language and the language the result named."""

    reference: str
    hypothesis: str
    language: str
    result_language: str
    seconds: float


def _selection(model: StreamingTransducer, language: str, select: bool) -> np.ndarray | None:
    """The utterance's own language as the stream's mask (``select``), else None: all languages."""
    if not select or language not in model.config.languages:
        return None
    return np.array([code == language for code in model.config.languages], np.float32)


def _transcripts(
    model: StreamingTransducer,
    search: Search,
    manifest: Path,
    streaming: bool,
    batch_seconds: float,
    select_language: bool = False,
) -> Iterator[Transcript]:
    if streaming:
        for audio_batch in audio_batches(model, manifest, batch_seconds):
            pieces = [in_pieces(samples, STREAM_PIECE_SAMPLES) for _, samples in audio_batch]
            options = [
                StreamOptions(
                    interim_results=False,
                    language_weights=_selection(model, u.language, select_language),
                    language_code=u.language if select_language else "",
                )
                for u, _ in audio_batch
            ]
            streamed = decode_streams(model, search, pieces, options)
            for (utterance, samples), updates in zip(audio_batch, streamed, strict=True):
                named = [r.language_code for u in updates for r in u.results if r.is_final]
                yield Transcript(
                    utterance.text,
                    final_text(updates),
                    utterance.language,
                    max(set(named), key=named.count) if named else "",
                    samples.size / model.config.sample_rate,
                )
        return
    frames_per_second = fbank_frames_per_second(model.config.features)
    for feature_batch in feature_batches(model, manifest, batch_seconds):
        padded, lengths = pad_features([f for _, f in feature_batch])
        masks = [_selection(model, u.language, select_language) for u, _ in feature_batch]
        weights = None
        if any(mask is not None for mask in masks):
            every = np.ones(len(model.config.languages), np.float32)
            weights = torch.from_numpy(np.stack([every if m is None else m for m in masks]))
        searched = search_utterances(model, search, padded, lengths, streaming=False, language_weights=weights)
        chosen = final_hypotheses(model, search, searched)
        for (utterance, features), hypothesis in zip(feature_batch, chosen, strict=True):
            text = model.tokenizer.decode([t for t, _ in hypothesis])
            yield Transcript(utterance.text, text, utterance.language, "", features.shape[0] / frames_per_second)


def _scores(transcripts: list[Transcript]) -> dict:
    references = [normalize_text(t.reference) for t in transcripts]
    # jiwer rejects empty hypotheses in some versions; an empty string is a deletion of all words.
    hypotheses = [normalize_text(t.hypothesis) or "<empty>" for t in transcripts]
    return {"wer": jiwer.wer(references, hypotheses), "cer": jiwer.cer(references, hypotheses)}


def evaluate(
    model: StreamingTransducer,
    search: Search,
    manifest: Path,
    streaming: bool,
    batch_seconds: float = 120.0,
    print_lines: bool = True,
    select_language: bool = False,
) -> dict:
    """WER and CER (accent-insensitive: ``normalize_text``), overall and per language; with
    several languages and none selected, how often a result names the utterance's language."""
    started = time.perf_counter()
    transcripts = []
    for transcript in _transcripts(model, search, manifest, streaming, batch_seconds, select_language):
        transcripts.append(transcript)
        if print_lines:
            reference, hypothesis = normalize_text(transcript.reference), normalize_text(transcript.hypothesis)
            print(json.dumps({"ref": reference, "hyp": hypothesis, "language": transcript.language}))
    elapsed = time.perf_counter() - started
    audio_seconds = sum(t.seconds for t in transcripts)
    summary = {
        **_scores(transcripts),
        "utterances": len(transcripts),
        "mode": "streaming" if streaming else "offline",
        "languages_selected": select_language,
        "audio_seconds": round(audio_seconds, 2),
        "real_time_factor": round(elapsed / max(audio_seconds, 1e-9), 4),
    }
    languages = sorted({t.language for t in transcripts})
    if len(languages) > 1:
        summary["per_language"] = {code: _scores([t for t in transcripts if t.language == code]) for code in languages}
    if streaming and not select_language and len(model.config.languages) > 1:
        named = [t for t in transcripts if t.result_language]
        correct = sum(t.result_language == t.language for t in named)
        summary["language_code_accuracy"] = round(correct / max(len(named), 1), 4)
    return summary


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model, default_search = load_model_and_search(args.model)
    search = search_from_arguments(model, default_search, args)
    summary = evaluate(
        model, search, args.manifest, args.mode == "streaming", args.batch_seconds, select_language=args.select_language
    )
    summary["search"] = describe_search(search)
    summary["model"] = model.config.name
    print(json.dumps(summary))
    return 0
