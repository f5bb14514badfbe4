"""``asr-train tune-rescoring``: choose the word-LM rescoring weights on a validation manifest.

The manifest is decoded once with the model's beam search (streaming mask; ``--beam`` for
another width); every K-best list is kept, so each point of the grid of (weight, word
bonus, unknown-word penalty and, for a model with a CTC head, CTC weight; decision 0015)
costs only a rescoring, not a decoding. Prints one JSON line per grid point, then the best
point and the WER without rescoring and of the oracle (the best hypothesis in each K-best list).
Tune on a validation set, never on the held-out set the card reports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer
import torch

from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.model.transducer import StreamingTransducer
from server.search.ctc_scores import ctc_sequence_log_probs
from server.search.hypotheses import best_index
from server.search.loading import load_model_and_search
from server.search.options import Search
from server.search.rescoring import WORD_LM_FILE, Rescorer, WordLM
from server.search.utterances import search_utterances
from training.evaluate import feature_batches, pad_features
from training.lm import set_default_rescoring
from training.text_normalize import normalize_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--manifest", type=Path, required=True, help="validation manifest (not the held-out set)")
    parser.add_argument("--word-lm", type=Path, help=f"default: MODEL/{WORD_LM_FILE}")
    parser.add_argument(
        "--beam",
        type=int,
        help="beam size of the K-best lists (default: the model's); with "
        "--set-default it is written too, so the weights stay with the beam they were tuned at",
    )
    parser.add_argument("--weights", type=float, nargs="+", default=[0.2, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--word-bonuses", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--oov-penalties", type=float, nargs="+", default=[0.0, 2.0, 4.0, 6.0, 8.0])
    parser.add_argument(
        "--ctc-weights",
        type=float,
        nargs="+",
        help="CTC head weights (default: 0, 0.1, 0.2, 0.3, 0.5 with a CTC head, else 0)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set-default", action="store_true", help="write the best point into MODEL/config.json")


@dataclass
class KBestList:
    """One utterance: normalized reference, the K hypothesis texts, their search scores and,
    with a CTC head, their CTC log-likelihoods (K,)."""

    reference: str
    texts: list[str]
    scores: list[float]
    ctc_scores: torch.Tensor | None
    ctc_seconds: float = 0.0  # what scoring the K hypotheses with the CTC head took


def kbest_lists(model: StreamingTransducer, manifest: Path, search: Search) -> list[KBestList]:
    if search.beam == 1:
        raise SystemExit("the search is greedy: rescoring needs beam search (--beam, or asr-train lm --set-default)")
    with_ctc = model.ctc_head is not None
    lists = []
    for batch in feature_batches(model, manifest, batch_seconds=120.0):
        padded, lengths = pad_features([f for _, f in batch])
        results = search_utterances(model, search, padded, lengths, streaming=True, with_ctc=with_ctc)
        for (reference, _), result in zip(batch, results, strict=True):
            token_lists = [[t for t, _ in hypothesis] for hypothesis in result.update.added]
            ctc_scores, started = None, time.perf_counter()
            if result.ctc_log_probs is not None:
                ctc_scores = ctc_sequence_log_probs(result.ctc_log_probs, token_lists, model.tokenizer.blank_id)
            lists.append(
                KBestList(
                    normalize_text(reference.text),
                    [model.tokenizer.decode(t) for t in token_lists],
                    result.update.scores,
                    ctc_scores,
                    time.perf_counter() - started,
                )
            )
    return lists


def _oracle_text(kbest: KBestList) -> str:
    """The hypothesis of the K-best list closest to its reference."""
    live = [text for text, score in zip(kbest.texts, kbest.scores, strict=True) if score > -math.inf]
    return min(live, key=lambda text: jiwer.wer(kbest.reference, normalize_text(text) or "<empty>"))


def _wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer(references, [normalize_text(h) or "<empty>" for h in hypotheses])


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model, default_search = load_model_and_search(args.model)
    word_lm = WordLM.load(args.word_lm or args.model / WORD_LM_FILE)
    search = default_search if args.beam is None else default_search.with_options(beam=args.beam)
    lists = kbest_lists(model, args.manifest, search)
    ctc_weights = args.ctc_weights or ([0.0, 0.1, 0.2, 0.3, 0.5] if model.ctc_head is not None else [0.0])
    if model.ctc_head is None and any(w > 0 for w in ctc_weights):
        raise SystemExit(f"{args.model} has no CTC head: --ctc-weights must be 0")
    references = [kbest.reference for kbest in lists]
    baseline = _wer(references, [kbest.texts[best_index(kbest.scores)] for kbest in lists])
    oracle = _wer(references, [_oracle_text(kbest) for kbest in lists])
    # What the word LM says of each hypothesis does not depend on the weights: compute it once
    # (and time it: this is what rescoring adds to every final result in the server).
    if lists:
        word_lm.sentence_scores(lists[0].texts)  # builds the LM's lookup keys once, as a server's first final does
    started = time.perf_counter()
    sentence_scores = [word_lm.sentence_scores(kbest.texts) for kbest in lists]
    query_ms = 1000 * (time.perf_counter() - started) / max(len(lists), 1)
    results = []
    grid = itertools.product(args.weights, args.word_bonuses, args.oov_penalties, ctc_weights)
    for weight, bonus, penalty, ctc_weight in grid:
        rescorer = Rescorer(word_lm, weight, bonus, penalty, ctc_weight)
        chosen = [
            kbest.texts[rescorer.best(kbest.scores, sentences, kbest.ctc_scores)]
            for kbest, sentences in zip(lists, sentence_scores, strict=True)
        ]
        results.append(
            {
                "weight": weight,
                "word_bonus": bonus,
                "oov_penalty": penalty,
                "ctc_weight": ctc_weight,
                "wer": round(_wer(references, chosen), 4),
            }
        )
        print(json.dumps(results[-1]))
    best = min(results, key=lambda r: r["wer"])
    if args.set_default:
        word_lm_path = args.word_lm or args.model / WORD_LM_FILE
        if word_lm_path.parent.resolve() != args.model.resolve():
            raise SystemExit(f"--set-default needs the word LM inside the model directory, not {word_lm_path}")
        set_default_rescoring(
            args.model,
            word_lm_path.name,
            best["weight"],
            best["word_bonus"],
            best["oov_penalty"],
            beam=args.beam,
            ctc_weight=best["ctc_weight"],
        )
    without_ctc = min((r for r in results if r["ctc_weight"] == 0.0), key=lambda r: r["wer"], default=None)
    print(
        json.dumps(
            {
                "best": best,
                "best_without_ctc": without_ctc,
                "without_rescoring": round(baseline, 4),
                "oracle": round(oracle, 4),
                "utterances": len(lists),
                "beam": search.beam,
                "word_lm_ms_per_final": round(query_ms, 2),
                "ctc_ms_per_final": round(1000 * sum(k.ctc_seconds for k in lists) / max(len(lists), 1), 2),
                "set_default": args.set_default,
            }
        )
    )
    return 0
