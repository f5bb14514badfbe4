"""Checkpoint directories: ``config.json`` + ``model.safetensors`` + tokenizer + ``MODEL_CARD.md``.

Weights are safetensors (no pickle). Every loading failure raises ``CheckpointError`` whose
message names the file and what is wrong with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from server.model.config import ModelConfig
from server.model.tokenizer import Tokenizer
from server.model.transducer import StreamingTransducer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_CARD_FILE = "MODEL_CARD.md"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "en-small"


class CheckpointError(RuntimeError):
    """A checkpoint directory cannot be loaded; the message says which file and why."""


def read_config(model_dir: Path) -> ModelConfig:
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint directory needs {CONFIG_FILE})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors())
        raise CheckpointError(f"{path}: invalid model config: {problems}") from error


def load_model(model_dir: Path | str = DEFAULT_MODEL_DIR, device: str = "cpu") -> StreamingTransducer:
    """Load a checkpoint directory into an eval-mode float32 model on ``device``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(
            f"{model_dir}: no checkpoint directory here (pass --model-dir, or train one: training/recipes)"
        )
    config = read_config(model_dir)
    tokenizer_path = model_dir / config.tokenizer.file
    if not tokenizer_path.is_file():
        raise CheckpointError(f"{tokenizer_path}: missing tokenizer model")
    try:
        tokenizer = Tokenizer(tokenizer_path, config.tokenizer.channel_change_token)
    except (OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{tokenizer_path}: cannot load tokenizer ({error})") from error
    try:
        model = StreamingTransducer(config, tokenizer)
    except ValueError as error:
        raise CheckpointError(f"{model_dir / CONFIG_FILE}: {error}") from error
    weights_path = model_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing weights file")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({error})") from error
    _load_tensors(model, tensors, weights_path)
    return model.to(device).eval()


def _load_tensors(model: StreamingTransducer, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match config.json (missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict({name: t.to(expected[name].dtype) for name, t in tensors.items()})


def save_model(model: StreamingTransducer, model_dir: Path, half: bool = True, model_card: str | None = None) -> Path:
    """Write a checkpoint directory (fp16 weights by default: half the size, same WER).

    The LM files of its default search are ``server.search.loading.save_search_files``'s job.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: (t.half() if half and t.is_floating_point() else t).contiguous().cpu()
        for name, t in model.state_dict().items()
    }
    save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    (model_dir / CONFIG_FILE).write_text(model.config.model_dump_json(indent=2) + "\n")
    tokenizer_target = model_dir / model.config.tokenizer.file
    if model.tokenizer.model_file.resolve() != tokenizer_target.resolve():
        tokenizer_target.write_bytes(model.tokenizer.model_file.read_bytes())
    if model_card is not None:
        (model_dir / MODEL_CARD_FILE).write_text(model_card)
    return model_dir
