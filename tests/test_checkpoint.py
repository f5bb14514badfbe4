"""Checkpoint round trip and clear errors for broken checkpoint directories."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from server.model.checkpoint import CheckpointError, load_model, save_model
from server.search.loading import load_model_and_search, save_search_files
from server.search.ngram_lm import build_ngram_lm


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def test_round_trip_preserves_weights_and_outputs(random_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(random_model_dir)
    saved = save_model(model, tmp_path / "again", half=False)
    again = load_model(saved)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    features = torch.randn(1, 120, 80)
    lengths = torch.tensor([120])
    with torch.no_grad():
        assert torch.equal(model.encoder(features, lengths)[0], again.encoder(features, lengths)[0])
    assert again.config == model.config


def test_half_precision_storage_is_close(random_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(random_model_dir)
    half = load_model(save_model(model, tmp_path / "half", half=True))
    assert all(
        t.dtype == torch.float16
        for t in load_file(str(tmp_path / "half" / "model.safetensors")).values()
        if t.is_floating_point()
    )
    features = torch.randn(1, 120, 80)
    with torch.no_grad():
        diff = model.encoder(features, torch.tensor([120]))[0] - half.encoder(features, torch.tensor([120]))[0]
    assert diff.abs().max().item() < 0.05


def _edit_config(model_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    edit(config)
    (model_dir / "config.json").write_text(json.dumps(config))


def _unknown_format_version(model_dir: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["format_version"] = 99

    _edit_config(model_dir, edit)


def _doubled_ffn_dim(model_dir: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["encoder"]["ffn_dim"] *= 2

    _edit_config(model_dir, edit)


def _one_tensor_less(model_dir: Path) -> None:
    tensors = load_file(str(model_dir / "model.safetensors"))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(model_dir / "model.safetensors"))


def _truncated_weights(model_dir: Path) -> None:
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(data[: len(data) // 2])


def _with_lm(random_model_dir: Path, tmp_path: Path, vocab_size: int | None = None) -> Path:
    """A copy of the random model whose config asks for beam search with an LM file."""
    from training.lm import set_default_decoding

    model_dir = _copy(random_model_dir, tmp_path)
    vocab = vocab_size or load_model(model_dir).tokenizer.vocab_size
    build_ngram_lm([[1, 2, 3, 4], [2, 3, 5]] * 5, vocab, order=3).save(model_dir / "lm.safetensors")
    set_default_decoding(model_dir, "lm.safetensors", beam=3, lm_weight=0.4, token_bonus=0.5)
    return model_dir


# How a checkpoint directory is broken, and the error that must name the file and the fault.
BROKEN_CHECKPOINTS = [
    pytest.param(lambda d: (d / "model.safetensors").unlink(), r"model\.safetensors: missing", id="missing-weights"),
    pytest.param(lambda d: (d / "config.json").unlink(), r"config\.json: missing", id="missing-config"),
    pytest.param(
        lambda d: (d / "config.json").write_text('{"name": "x", '), r"config\.json: not valid JSON", id="corrupt-json"
    ),
    pytest.param(_unknown_format_version, r"config\.json: .*unknown format_version 99", id="unknown-format-version"),
    pytest.param(_doubled_ffn_dim, r"model\.safetensors: tensor .* has shape", id="shape-mismatch"),
    pytest.param(_one_tensor_less, r"model\.safetensors: weights do not match .*missing", id="missing-tensor"),
    pytest.param(_truncated_weights, r"model\.safetensors: unreadable", id="truncated-weights"),
    pytest.param(lambda d: (d / "tokenizer.model").unlink(), r"tokenizer\.model: missing", id="missing-tokenizer"),
]
# The same for the LM file of a model whose default search uses one (loaded with the search).
BROKEN_LMS = [
    pytest.param(
        lambda d: (d / "lm.safetensors").unlink(), r"lm\.safetensors: missing language model", id="missing-lm"
    ),
    pytest.param(
        lambda d: (d / "lm.safetensors").write_bytes(b"not a safetensors file"),
        r"lm\.safetensors: unreadable language model",
        id="corrupt-lm",
    ),
]


def _flagged(with_lm: bool, params: list[Any]) -> list[Any]:
    return [pytest.param(with_lm, *param.values, id=param.id) for param in params]


@pytest.mark.parametrize(
    ("with_lm", "breakage", "message"), [*_flagged(False, BROKEN_CHECKPOINTS), *_flagged(True, BROKEN_LMS)]
)
def test_broken_checkpoint_is_named(
    random_model_dir: Path, tmp_path: Path, with_lm: bool, breakage: Callable[[Path], object], message: str
) -> None:
    broken = _with_lm(random_model_dir, tmp_path) if with_lm else _copy(random_model_dir, tmp_path)
    breakage(broken)
    load = load_model_and_search if with_lm else load_model
    with pytest.raises(CheckpointError, match=message):
        load(broken)


def test_missing_directory_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nothing-here: no checkpoint directory here \(pass --model-dir"):
        load_model(tmp_path / "nothing-here")


def test_decode_puts_single_spaces_between_words(random_model_dir: Path) -> None:
    tokenizer = load_model(random_model_dir).tokenizer
    boundary = next(i for i in range(tokenizer.vocab_size) if tokenizer.id_to_piece(i) == "\u2581")
    word = tokenizer.encode("the")
    text = tokenizer.decode(word + [boundary, boundary] + word)
    assert text == "the the"


def test_default_search_with_lm_loads_and_survives_a_round_trip(random_model_dir: Path, tmp_path: Path) -> None:
    model, search = load_model_and_search(_with_lm(random_model_dir, tmp_path))
    assert (search.beam, search.options.lm_weight, search.options.token_bonus) == (3, 0.4, 0.5)
    assert search.fused_lm is not None and search.fused_lm.order == 3
    save_model(model, tmp_path / "again")
    save_search_files(search.resources, model.config, tmp_path / "again")
    _, again = load_model_and_search(tmp_path / "again")
    assert again.beam == 3 and again.fused_lm is not None
    assert (tmp_path / "again" / "lm.safetensors").is_file()


def test_lm_of_another_vocabulary_is_refused(random_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _with_lm(random_model_dir, tmp_path, vocab_size=500)
    with pytest.raises(CheckpointError, match=r"lm\.safetensors: LM vocabulary 500 does not match"):
        load_model_and_search(model_dir)
