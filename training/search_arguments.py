"""Search options on the command line (``asr-train eval``, ``card``): the model's default search,
with what the flags name replaced."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from server.model.transducer import StreamingTransducer
from server.search.ngram_lm import TokenNgramLM
from server.search.options import RescoringOptions, Search, SearchOptions, SearchResources
from server.search.rescoring import WordLM


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
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


def search_from_arguments(model: StreamingTransducer, default: Search, args: argparse.Namespace) -> Search:
    """``default`` (the model's search) with the options given on the command line replaced."""
    if args.ctc_weight and model.ctc_head is None:
        raise SystemExit(f"--ctc-weight: model {model.config.name} has no CTC head")
    options, resources = default.options, default.resources
    token_lm = TokenNgramLM.load(args.lm) if args.lm else resources.token_lm
    word_lm = WordLM.load(args.word_lm) if args.word_lm else resources.word_lm
    base = options.rescoring or RescoringOptions(weight=0.5)
    rescoring = RescoringOptions(
        weight=base.weight if args.rescore_weight is None else args.rescore_weight,
        word_bonus=base.word_bonus if args.word_bonus is None else args.word_bonus,
        oov_penalty=base.oov_penalty if args.oov_penalty is None else args.oov_penalty,
        ctc_weight=base.ctc_weight if args.ctc_weight is None else args.ctc_weight,
    )
    chosen = dataclasses.replace(
        options,
        beam=args.beam or options.beam,
        lm_weight=options.lm_weight if args.lm_weight is None else args.lm_weight,
        token_bonus=options.token_bonus if args.token_bonus is None else args.token_bonus,
        rescoring=None if args.no_rescoring or word_lm is None else rescoring,
    )
    return Search(chosen, SearchResources(token_lm, word_lm))


def describe_search(search: Search) -> dict:
    """The search as the JSON summaries and model cards report it."""
    if search.beam == 1:
        return {"beam": 1, "method": "greedy"}
    lm, options = search.fused_lm, search.options
    return {
        "beam": search.beam,
        "method": "modified beam search",
        "lm_order": lm.order if lm is not None else None,
        "lm_weight": options.lm_weight if lm is not None else 0.0,
        "token_bonus": options.token_bonus,
        "rescoring": search.rescorer.describe() if search.rescorer else None,
    }


def greedy_variant(search: Search) -> Search:
    """Greedy search (beam 1, no LM, no rescoring) over the same resources."""
    return Search(SearchOptions(), search.resources)
