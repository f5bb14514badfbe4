"""Helpers for tests of the ``asr-train`` command line: argument lists and its JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

Option = str | int | float | Path | bool | list[str | int | float] | None


def cli_args(command: str, **options: Option) -> list[str]:
    """``command`` and its options as argv, in the order given: ``set_default=True`` -> ``--set-default``;
    ``weights=[0, 1]`` -> ``--weights 0 1``; ``False`` and ``None`` leave the option out."""
    argv = [command]
    for name, value in options.items():
        if value is None or value is False:
            continue
        argv.append("--" + name.replace("_", "-"))
        if isinstance(value, list):
            argv.extend(str(item) for item in value)
        elif value is not True:
            argv.append(str(value))
    return argv


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[Any]:
    """Each line printed since the last read, parsed as JSON (the commands end with a summary line)."""
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def last_json_line(capsys: pytest.CaptureFixture[str]) -> Any:
    """The last line printed since the last read, parsed as JSON: a command's summary."""
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def run_lm_command(model_dir: Path, sentences: int, **options: Option) -> int:
    """``asr-train lm`` on ``sentences`` of the everyday mixture, made the model's default: the exit code."""
    from training.cli import main

    return main(cli_args("lm", model=model_dir, sentences=sentences, mixture="everyday=1", set_default=True, **options))
