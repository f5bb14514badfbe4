"""``asr-train eval``: WER/CER of a model on a manifest, streaming (default) or offline.

Streaming mode decodes with the serving attention mask, which computes exactly what the
chunk-by-chunk server computes (tests/test_streaming_equivalence.py); offline mode uses
full context. The last printed line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jiwer
import torch

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.frontend import compute_fbank
from server.model.transducer import StreamingTransducer
from server.search.beam import SearchConfig
from server.search.ngram_lm import TokenNgramLM
from server.search.rescoring import Rescorer, WordLM
from training.manifest import read_audio, read_manifest
from training.text_normalize import normalize_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: bundled)")
    parser.add_argument("--manifest", type=Path, required=True, help="JSON lines {audio, text[, language]}")
    parser.add_argument("--mode", choices=["streaming", "offline"], default="streaming")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per decoding batch")
    # Search options default to the model's config.json decoding section (what its card measured).
    parser.add_argument("--beam", type=int, help="beam size, 1 = greedy search (default: the model's)")
    parser.add_argument("--lm", type=Path, help="token n-gram LM for shallow fusion (default: the model's)")
    parser.add_argument("--lm-weight", type=float, help="LM weight in beam search (default: the model's)")
    parser.add_argument("--token-bonus", type=float, help="score added per emitted token (default: the model's)")
    parser.add_argument("--word-lm", type=Path, help="word LM rescoring final hypotheses (default: the model's)")
    parser.add_argument("--no-rescoring", action="store_true", help="final result = best search score")
    parser.add_argument("--rescore-weight", type=float, help="word LM weight in rescoring (default: the model's)")
    parser.add_argument("--word-bonus", type=float, help="rescoring score per word (default: the model's)")
    parser.add_argument("--oov-penalty", type=float, help="rescoring penalty per unknown word (default: the model's)")
    parser.add_argument("--ctc-weight", type=float, help="CTC head weight in rescoring (default: the model's)")


def search_from_arguments(model: StreamingTransducer, args: argparse.Namespace) -> SearchConfig:
    """The model's default search with the options given on the command line replaced."""
    default = model.default_search
    if args.ctc_weight and model.ctc_head is None:
        raise SystemExit(f"--ctc-weight: model {model.config.name} has no CTC head")
    lm = TokenNgramLM.load(args.lm) if args.lm else default.lm
    return SearchConfig(
        beam=default.beam if args.beam is None else args.beam,
        lm=lm,
        lm_weight=0.0 if lm is None else (default.lm_weight if args.lm_weight is None else args.lm_weight),
        token_bonus=default.token_bonus if args.token_bonus is None else args.token_bonus,
        rescorer=None if args.no_rescoring else rescorer_from_arguments(default.rescorer, args),
    )


def rescorer_from_arguments(default: Rescorer | None, args: argparse.Namespace) -> Rescorer | None:
    """The model's rescorer (or one with ``--word-lm``), its weights replaced where given."""
    lm = WordLM.load(args.word_lm) if args.word_lm else (default.lm if default else None)
    if lm is None:
        return None
    base = default or Rescorer(lm, weight=0.5)
    return Rescorer(
        lm,
        weight=base.weight if args.rescore_weight is None else args.rescore_weight,
        word_bonus=base.word_bonus if args.word_bonus is None else args.word_bonus,
        oov_penalty=base.oov_penalty if args.oov_penalty is None else args.oov_penalty,
        ctc_weight=base.ctc_weight if args.ctc_weight is None else args.ctc_weight,
    )


def pad_features(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """fbank matrices (T_i, 80) -> zero-padded batch (B, T_max, 80) and lengths (B,)."""
    return torch.nn.utils.rnn.pad_sequence(features, batch_first=True), torch.tensor([f.shape[0] for f in features])


def transcribe_features(
    model: StreamingTransducer, features: list[torch.Tensor], streaming: bool, search: SearchConfig | None = None
) -> list[str]:
    """Transcripts of fbank matrices (T_i, 80), decoded as one padded batch (greedy by default)."""
    padded, lengths = pad_features(features)
    with torch.inference_mode():
        tokens = model.transcribe_batch(padded, lengths, streaming=streaming, search=search)
    return [model.tokenizer.decode([t for t, _ in hyp]) for hyp in tokens]


def feature_batches(
    model: StreamingTransducer, manifest: Path, batch_seconds: float
) -> Iterator[list[tuple[str, torch.Tensor, float]]]:
    """The manifest's utterances as (reference, fbank (T, 80), audio seconds), about ``batch_seconds`` a batch."""
    pending: list[tuple[str, torch.Tensor, float]] = []
    for utterance in read_manifest(manifest):
        samples, rate = read_audio(utterance.audio)
        features = torch.from_numpy(compute_fbank(samples, rate, model.config.features))
        pending.append((utterance.text, features, len(samples) / rate))
        if sum(f.shape[0] for _, f, _ in pending) / 100 >= batch_seconds:
            yield pending
            pending = []
    if pending:
        yield pending


def evaluate(
    model: StreamingTransducer,
    manifest: Path,
    streaming: bool,
    batch_seconds: float = 120.0,
    print_lines: bool = True,
    search: SearchConfig | None = None,
) -> dict:
    references, hypotheses = [], []
    started = time.perf_counter()
    audio_seconds = 0.0
    for batch in feature_batches(model, manifest, batch_seconds):
        texts = transcribe_features(model, [f for _, f, _ in batch], streaming, search)
        for (reference, _, seconds), hypothesis in zip(batch, texts, strict=True):
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


def describe_search(search: SearchConfig) -> dict:
    if search.beam == 1:
        return {"beam": 1, "method": "greedy"}
    return {
        "beam": search.beam,
        "method": "modified beam search",
        "lm_order": search.lm.order if search.lm else None,
        "lm_weight": search.lm_weight,
        "token_bonus": search.token_bonus,
        "rescoring": search.rescorer.describe() if search.rescorer else None,
    }


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    search = search_from_arguments(model, args)
    summary = evaluate(model, args.manifest, args.mode == "streaming", args.batch_seconds, search=search)
    summary["search"] = describe_search(search)
    summary["model"] = model.config.name
    print(json.dumps(summary))
    return 0
