"""Seconds to CTC-score a final's N-best list: ``ctc_loss`` per sequence against the prefix tree.

Finals are rescored with the CTC head (``server.search.ctc_scores``); this measures both ways on
random CTC log-probabilities and an N-best list shaped like a beam's (one shared transcript,
hypotheses cut at different points with a few tokens of their own), for utterances of several
lengths (25 encoder frames and about 6.5 tokens per second). The least of ``--repeats`` wall
times, one thread. Usage:
    python benchmarks/ctc_scores_speed.py [--seconds 3 5 8 12 20 30] [--nbest 32] [--repeats 3]
        [--report reports/ctc_scores_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from server.search.ctc_scores import TREE_MIN_CELLS, ctc_loss_scores, prefix_tree_scores

Scorer = Callable[[torch.Tensor, list[list[int]], int], torch.Tensor]


def nbest_like(
    seconds: float, nbest: int, vocab: int, generator: torch.Generator
) -> tuple[torch.Tensor, list[list[int]]]:
    """Log-probabilities (T, V) and ``nbest`` token sequences for an utterance of ``seconds``."""
    frames, tokens = int(seconds * 25), int(seconds * 6.5)
    log_probs = (3 * torch.randn(frames, vocab, generator=generator)).log_softmax(dim=-1)
    shared = torch.randint(1, vocab, (tokens,), generator=generator).tolist()
    endings = torch.randint(1, vocab, (nbest, 3), generator=generator).tolist()
    return log_probs, [shared[: tokens - k % 7] + endings[k][: k % 4] for k in range(nbest)]


def least_seconds(scorer: Scorer, log_probs: torch.Tensor, hypotheses: list[list[int]], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer(log_probs, hypotheses, 0)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[3, 5, 8, 12, 20, 30])
    parser.add_argument("--nbest", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", type=Path, default=Path("reports/ctc_scores_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    runs = []
    for seconds in args.seconds:
        log_probs, hypotheses = nbest_like(seconds, args.nbest, args.vocab, generator)
        cells = log_probs.shape[0] * sum(map(len, hypotheses))
        run = {
            "utterance_seconds": seconds,
            "cells": cells,
            "ctc_loss_ms": round(1e3 * least_seconds(ctc_loss_scores, log_probs, hypotheses, args.repeats), 2),
            "prefix_tree_ms": round(1e3 * least_seconds(prefix_tree_scores, log_probs, hypotheses, args.repeats), 2),
            "used": "prefix tree" if cells >= TREE_MIN_CELLS else "ctc_loss",
        }
        print(
            f"{seconds:5.1f} s, {cells:8d} cells: ctc_loss {run['ctc_loss_ms']:7.2f} ms, "
            f"prefix tree {run['prefix_tree_ms']:7.2f} ms (used: {run['used']})"
        )
        runs.append(run)
    report = {
        "nbest": args.nbest,
        "vocab": args.vocab,
        "machine": f"{platform.machine()} {platform.processor()}, torch {torch.__version__}",
        "runs": runs,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
