"""``asr-train eval``: WER/CER of a model on a manifest, streaming (default) or offline.

Streaming mode decodes through the engine's own per-stream decoder and batch stepper
(``server.engine.offline``), chunk by chunk with endpointing, as the server does; offline
mode decodes whole utterances with full context. The last printed line is a JSON summary.

With ``--multi-talker`` (streaming) the rows' per-talker references (``speakers``, e.g. from
``asr-train mix-tsot``) are scored against the result channels by cpWER
(``training.tsot.cpwer``), and the single-talker rows also with ``multi_talker`` off.
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
from server.model.quantize import RANGES_FILE, quantize_for_cpu, read_ranges
from server.model.transducer import StreamingTransducer
from server.search.loading import load_model_and_search
from server.search.options import Search
from server.search.utterances import final_hypotheses, search_utterances
from training.manifest import Utterance, read_audio, read_manifest
from training.search_arguments import add_search_arguments, describe_search, search_from_arguments
from training.text_normalize import normalize_text
from training.tsot.cpwer import best_permutation, speaker_references

# Audio piece the streaming mode feeds each stream per round (100 ms at 16 kHz), as a client would send.
STREAM_PIECE_SAMPLES = 1600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: bundled)")
    parser.add_argument("--manifest", type=Path, required=True, help="JSON lines {audio, text[, language]}")
    parser.add_argument("--mode", choices=["streaming", "offline"], default="streaming")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--int8", action="store_true", help="int8 encoder and joiner output, as the server computes with --int8"
    )
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per decoding batch")
    parser.add_argument(
        "--select-language",
        action="store_true",
        help="each utterance with its manifest language selected (language_codes); default: all languages",
    )
    parser.add_argument(
        "--multi-talker",
        action="store_true",
        help="t-SOT: cpWER over the result channels against the rows' speakers (streaming mode only)",
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
    engine: str = ""


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
                    utterance.engine,
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
            seconds = features.shape[0] / frames_per_second
            yield Transcript(utterance.text, text, utterance.language, "", seconds, utterance.engine)


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
    """WER and CER (accent-insensitive: ``normalize_text``), overall, per language and per TTS
    engine (where the manifest names them); with several languages and none selected, how often a
    result names the utterance's language."""
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
    engines = sorted({t.engine for t in transcripts if t.engine})
    if len(engines) > 1:
        summary["per_engine"] = {name: _scores([t for t in transcripts if t.engine == name]) for name in engines}
    if streaming and not select_language and len(model.config.languages) > 1:
        named = [t for t in transcripts if t.result_language]
        correct = sum(t.result_language == t.language for t in named)
        summary["language_code_accuracy"] = round(correct / max(len(named), 1), 4)
    return summary


# Virtual channels a multi-talker stream's results may carry (``server.engine.transcript``).
NUM_CHANNELS = 2


def channel_transcripts(
    model: StreamingTransducer,
    search: Search,
    manifest: Path,
    multi_talker: bool,
    batch_seconds: float = 120.0,
    rows: set[int] | None = None,
) -> dict[int, list[str]]:
    """Per manifest row (or those in ``rows``), the streamed finals of each channel (0, 1), normalized."""
    transcripts: dict[int, list[str]] = {}
    number = 0
    for audio_batch in audio_batches(model, manifest, batch_seconds):
        chosen = [(number + k, samples) for k, (_, samples) in enumerate(audio_batch)]
        number += len(audio_batch)
        chosen = [(n, samples) for n, samples in chosen if rows is None or n in rows]
        if not chosen:
            continue
        options = StreamOptions(interim_results=False, multi_talker=multi_talker)
        streamed = decode_streams(model, search, [in_pieces(s, STREAM_PIECE_SAMPLES) for _, s in chosen], options)
        for (n, _), updates in zip(chosen, streamed, strict=True):
            transcripts[n] = [normalize_text(final_text(updates, channel)) for channel in range(NUM_CHANNELS)]
    return transcripts


def _permuted_scores(references: list[list[str]], hypotheses: list[list[str]]) -> dict:
    """cpWER terms summed over recordings."""
    results = [best_permutation(refs, hyps) for refs, hyps in zip(references, hypotheses, strict=True)]
    errors, words = sum(r.errors for r in results), sum(r.reference_words for r in results)
    return {"errors": errors, "reference_words": words, "wer": errors / max(1, words)}


def evaluate_multi_talker(
    model: StreamingTransducer, search: Search, manifest: Path, batch_seconds: float = 120.0, print_lines: bool = True
) -> dict:
    """cpWER of the streamed channels (``multi_talker`` on) over every row; on the one-talker rows
    also their WER with ``multi_talker`` on (cpWER: the talker's best channel, any other channel's
    words inserted) and off (channel 0), and how often a second channel appears."""
    started = time.perf_counter()
    references = [[normalize_text(text) for text in refs] for refs in speaker_references(manifest)]
    on = channel_transcripts(model, search, manifest, True, batch_seconds)
    single = {n for n, refs in enumerate(references) if len(refs) == 1}
    off = channel_transcripts(model, search, manifest, False, batch_seconds, rows=single)
    if print_lines:
        for n, refs in enumerate(references):
            print(json.dumps({"refs": refs, "hyps": on[n], "errors": best_permutation(refs, on[n]).errors}))
    rows = range(len(references))
    overall = _permuted_scores(references, [on[n] for n in rows])
    two = [n for n in rows if len(references[n]) > 1]
    ones = sorted(single)
    summary = {
        "cpwer": overall["wer"],
        "cpwer_errors": overall["errors"],
        "reference_words": overall["reference_words"],
        "utterances": len(references),
        "multi_talker_utterances": len(two),
        "cpwer_multi_talker_rows": _permuted_scores([references[n] for n in two], [on[n] for n in two])["wer"]
        if two
        else None,
        "single_talker": {
            "utterances": len(ones),
            "wer_multi_talker_on": _permuted_scores([references[n] for n in ones], [on[n] for n in ones])["wer"],
            # Off: one channel, the talker's reference against channel 0 alone.
            "wer_multi_talker_off": _permuted_scores([references[n] for n in ones], [off[n][:1] for n in ones])["wer"],
            "second_channel_rate": sum(bool(on[n][1]) for n in ones) / max(1, len(ones)),
        }
        if ones
        else None,
        "mode": "streaming",
        "multi_talker": True,
        "model_multi_talker": model.config.multi_talker,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return summary


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model, default_search = load_model_and_search(args.model)
    if args.int8:
        ranges = read_ranges(args.model)
        if ranges is None:
            raise SystemExit(f"eval --int8: {args.model} has no {RANGES_FILE}; run asr-train calibrate-int8 first")
        quantize_for_cpu(model, ranges)
    search = search_from_arguments(model, default_search, args)
    if args.multi_talker:
        if args.mode != "streaming":
            raise SystemExit("eval --multi-talker: streaming mode only (channels come from the stream's decoder)")
        summary = evaluate_multi_talker(model, search, args.manifest, args.batch_seconds)
    else:
        summary = evaluate(
            model,
            search,
            args.manifest,
            args.mode == "streaming",
            args.batch_seconds,
            select_language=args.select_language,
        )
    summary["search"] = describe_search(search)
    summary["model"] = model.config.name
    summary["int8"] = args.int8
    print(json.dumps(summary))
    return 0
