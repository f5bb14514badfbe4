"""Where ``asr-train fit`` keeps its state in EXP_DIR: the checkpoint folders, the optimizer state and the CTC head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

import torch
from safetensors.torch import load_file, save_file

LATEST, BEST = "latest", "best"
TRAINER_FILE = "trainer.json"  # step, hours seen, optimizer settings
CTC_HEAD_FILE = "ctc_head.safetensors"  # the auxiliary CTC head, beside the optimizer state (bundle attaches it)


class TrainerInfo(TypedDict):
    """The training run's scalars, kept in TRAINER_FILE."""

    step: int
    best_wer: float
    epoch: int
    hours_seen: float


def save_trainer(directory: Path, optimizer: torch.optim.Optimizer, info: TrainerInfo) -> None:
    """Optimizer state as safetensors (no pickle) plus a JSON of the scalars."""
    state = optimizer.state_dict()
    tensors = {
        f"{param}.{key}": value.contiguous() for param, entry in state["state"].items() for key, value in entry.items()
    }
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / TRAINER_FILE).write_text(json.dumps({**info, "param_groups": state["param_groups"]}, indent=1))


def load_trainer(directory: Path, optimizer: torch.optim.Optimizer) -> TrainerInfo:
    """Restore what ``save_trainer`` wrote into ``optimizer``; return the scalars (step, hours seen ...)."""
    info = json.loads((directory / TRAINER_FILE).read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in load_file(str(directory / "optimizer.safetensors")).items():
        param, key = name.split(".", 1)
        state.setdefault(int(param), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": info.pop("param_groups")})
    return info
