"""The JSON report every benchmark writes: model, machine and the runs it measured."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def write_report(path: Path, model, runs: list[dict]) -> None:
    """Write ``runs`` with the model's name/size and the machine to ``path`` and say where."""
    report = {
        "model": model.config.name,
        "parameters": model.num_parameters,
        "machine": f"{platform.machine()} {platform.processor()}, torch {torch.__version__}",
        "runs": runs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {path}")
