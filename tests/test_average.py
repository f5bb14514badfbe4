"""Checkpoint averaging (asr-train average) and the snapshots asr-train fit keeps for it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from random_model import save_random_model
from safetensors.torch import load_file

from server.model.checkpoint import load_model
from tests.test_speed_perturb import _tone_manifest
from training.average import average_models, snapshot_dirs
from training.cli import main as asr_train


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("seeds")
    return [save_random_model(root / f"seed{seed}", seed=seed) for seed in range(3)]


def _float_params(model_dir: Path) -> dict[str, torch.Tensor]:
    return {n: t.float() for n, t in load_model(model_dir).state_dict().items() if t.is_floating_point()}


def test_average_is_the_mean_of_every_weight(three_seeds: list[Path]) -> None:
    first, second = _float_params(three_seeds[0]), _float_params(three_seeds[1])
    averaged = average_models(three_seeds[:2]).state_dict()
    differing = [n for n in first if not torch.equal(first[n], second[n])]
    assert differing, "the two seeds should give different weights"
    for name in first:
        torch.testing.assert_close(averaged[name].float(), (first[name] + second[name]) / 2, atol=1e-6, rtol=0)


def test_average_of_one_checkpoint_is_that_checkpoint(three_seeds: list[Path]) -> None:
    original = _float_params(three_seeds[2])
    averaged = average_models([three_seeds[2]]).state_dict()
    for name, tensor in original.items():
        assert torch.equal(averaged[name].float(), tensor)


def test_checkpoints_of_different_architectures_are_refused(three_seeds: list[Path], tmp_path: Path) -> None:
    other = save_random_model(tmp_path / "multi", multi_talker=True)
    with pytest.raises(ValueError, match="multi.*differs"):
        average_models([three_seeds[0], other])
    with pytest.raises(ValueError, match="nothing to average"):
        average_models([])


def test_command_averages_the_newest_snapshots(three_seeds: list[Path], tmp_path: Path) -> None:
    exp_dir = tmp_path / "exp"
    for step, seed_dir in zip([100, 200, 300], three_seeds, strict=True):
        shutil.copytree(seed_dir, exp_dir / "snapshots" / f"step-{step:07d}")
    assert [p.name for p in snapshot_dirs(exp_dir, 2)] == ["step-0000200", "step-0000300"]
    assert asr_train(["average", "--exp-dir", str(exp_dir), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    averaged = _float_params(tmp_path / "avg")
    second, third = _float_params(three_seeds[1]), _float_params(three_seeds[2])
    for name, tensor in averaged.items():
        torch.testing.assert_close(tensor, (second[name] + third[name]) / 2, atol=1e-6, rtol=0)
    with pytest.raises(FileNotFoundError, match="no snapshots"):
        snapshot_dirs(tmp_path / "empty", 2)


def test_fit_keeps_snapshots_after_the_given_step(random_model_dir: Path, tmp_path: Path) -> None:
    manifest = _tone_manifest(tmp_path)
    exp_dir = tmp_path / "exp"
    status = asr_train(
        [
            "fit",
            "--train-manifest",
            str(manifest),
            "--valid-manifest",
            str(manifest),
            "--exp-dir",
            str(exp_dir),
            "--init-from",
            str(random_model_dir),
            "--max-steps",
            "6",
            "--warmup-steps",
            "2",
            "--valid-every",
            "1000",
            "--jobs",
            "1",
            "--threads",
            "1",
            "--snapshot-every",
            "2",
            "--snapshot-after",
            "2",
        ]
    )
    assert status == 0
    assert [p.name for p in snapshot_dirs(exp_dir, 10)] == ["step-0000004", "step-0000006"]
    # The last snapshot is the final model, written as a loadable checkpoint.
    final, snapshot = _float_params(exp_dir / "latest"), _float_params(exp_dir / "snapshots" / "step-0000006")
    for name, tensor in final.items():
        assert torch.equal(snapshot[name], tensor)
    # Each snapshot keeps the CTC head of its step, which asr-train bundle attaches.
    head = load_file(str(exp_dir / "latest" / "ctc_head.safetensors"))
    snapshot_head = load_file(str(exp_dir / "snapshots" / "step-0000006" / "ctc_head.safetensors"))
    assert all(torch.equal(snapshot_head[name], tensor) for name, tensor in head.items())
