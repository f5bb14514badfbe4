"""``asr-train average``: average the weights of several checkpoints of one run into one model.

Averaging the snapshots a run takes while its learning rate cools down gives a model that
sits nearer the middle of the minimum the run circles than any single snapshot (the
"model averaging" step of icefall and ESPnet recipes). The snapshots must share one
architecture and tokenizer; the averaged model takes the first one's config, tokenizer
and decoding defaults. Choose how many to average on a validation manifest
(``asr-train eval``), not on the held-out set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from server.model.checkpoint import load_model, save_model
from server.model.transducer import StreamingTransducer

SNAPSHOTS_DIR = "snapshots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--models", type=Path, nargs="+", help="checkpoint directories to average")
    source.add_argument("--exp-dir", type=Path, help=f"average the last --last snapshots in EXP_DIR/{SNAPSHOTS_DIR}")
    parser.add_argument("--last", type=int, default=8, help="with --exp-dir: how many of the newest snapshots")
    parser.add_argument("--out", type=Path, required=True, help="directory for the averaged checkpoint")


def snapshot_dirs(exp_dir: Path, last: int) -> list[Path]:
    """The newest ``last`` snapshot directories of a run, oldest first (names sort by step)."""
    snapshots = sorted(p for p in (exp_dir / SNAPSHOTS_DIR).glob("step-*") if p.is_dir())
    if not snapshots:
        raise FileNotFoundError(f"{exp_dir / SNAPSHOTS_DIR}: no snapshots (train with asr-train fit --snapshot-every)")
    return snapshots[-last:]


def average_models(model_dirs: list[Path]) -> StreamingTransducer:
    """One model whose floating-point tensors are the mean of the given checkpoints'.

    Integer tensors (none today, but counters would be) are taken from the last checkpoint.
    Raises ValueError when a checkpoint's architecture or vocabulary differs from the first.
    """
    if not model_dirs:
        raise ValueError("nothing to average: no checkpoint directories given")
    average = load_model(model_dirs[0])
    reference = average.config.model_dump(exclude={"decoding", "name"})
    sums = {name: t.double().clone() for name, t in average.state_dict().items() if t.is_floating_point()}
    last_state = average.state_dict()
    for model_dir in model_dirs[1:]:
        model = load_model(model_dir)
        if model.config.model_dump(exclude={"decoding", "name"}) != reference:
            raise ValueError(
                f"{model_dir}: its config.json differs from {model_dirs[0]}'s; "
                "only snapshots of one run can be averaged"
            )
        last_state = model.state_dict()
        for name in sums:
            sums[name] += last_state[name].double()
    merged = {
        name: (sums[name] / len(model_dirs)).to(t.dtype) if name in sums else last_state[name]
        for name, t in average.state_dict().items()
    }
    with torch.no_grad():
        average.load_state_dict(merged)
    return average


def run(args: argparse.Namespace) -> int:
    model_dirs = args.models or snapshot_dirs(args.exp_dir, args.last)
    model = average_models(model_dirs)
    save_model(model, args.out, half=False)
    print(f"averaged {len(model_dirs)} checkpoints ({model_dirs[0].name} .. {model_dirs[-1].name}) into {args.out}")
    return 0
