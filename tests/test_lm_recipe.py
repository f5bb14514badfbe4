"""``asr-train lm``: builds an LM from generated text and makes it the model's default search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import last_json_line, run_lm_command
from safetensors import safe_open

from server.search.loading import load_model_and_search
from training.cli import main


def _mean_log_prob(lm, token_ids: list[int]) -> float:
    context = [0] * lm.context_size
    total = 0.0
    for token in token_ids:
        total += lm.log_probs(torch.tensor([context]))[0, token].item()
        context = context[1:] + [token]
    return total / len(token_ids)


def test_lm_command_builds_the_default_search(
    random_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = shutil.copytree(random_model_dir, tmp_path / "model")
    code = run_lm_command(model_dir, 400, order=3, beam=3, lm_weight=0.4, token_bonus=0.7)
    assert code == 0
    summary = last_json_line(capsys)
    assert summary["sentences"] == 400 and summary["entries"] > 0
    with safe_open(str(model_dir / "lm.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["info"])["mixture"] == "everyday=1"

    model, search = load_model_and_search(model_dir)
    assert (search.beam, search.options.lm_weight, search.options.token_bonus) == (3, 0.4, 0.7)
    # The LM has learned English order: a sentence scores better than its words reversed.
    tokenizer = model.tokenizer
    sentence = "could you tell me where the station is"
    forward = _mean_log_prob(search.fused_lm, tokenizer.encode(sentence))
    backward = _mean_log_prob(search.fused_lm, tokenizer.encode(" ".join(reversed(sentence.split()))))
    assert forward > backward + 0.1


def test_model_card_reports_the_default_search_and_greedy(
    random_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``asr-train card`` on a model whose default is beam + LM measures both searches."""
    model_dir = shutil.copytree(random_model_dir, tmp_path / "model")
    assert run_lm_command(model_dir, 200, order=3, beam=2) == 0
    rng = np.random.default_rng(0)
    rows = []
    for index, text in enumerate(["hello there", "see you soon"]):
        path = tmp_path / f"{index}.wav"
        sf.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        rows.append(json.dumps({"audio": str(path), "text": text, "duration": 1.0}))
    manifest = tmp_path / "heldout.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert main(["card", "--model", str(model_dir), "--heldout", str(manifest), "--train-manifest", str(manifest)]) == 0
    summary = last_json_line(capsys)
    assert summary["streaming"]["search"]["beam"] == 2 and summary["greedy_streaming"]["utterances"] == 2
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "modified beam search, beam 2, 3-gram token LM" in card
    assert "| streaming, greedy search (no LM) |" in card
    assert "from 200 sentences" in card
