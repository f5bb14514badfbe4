"""ARPA n-gram files imported into our LM format give every (context, word) the ARPA probability."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import last_json_line

from server.search.loading import load_model_and_search
from training.arpa import arpa_log10_prob, read_arpa, token_lm_from_arpa, word_lm_from_arpa
from training.cli import main

# A normalised bigram backoff model: bo(h) = (1 - sum of p(w|h) seen) / (1 - sum of p1(w) seen after h).
ARPA = """
\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-99\t<s>\t{bo_s}
{a}\ta\t{bo_a}
{b}\tb\t{bo_b}
{end}\t</s>
{unk}\t<unk>

\\2-grams:
{sa}\t<s> a
{ab}\ta b
{bend}\tb </s>

\\end\\
"""


def _arpa_text() -> str:
    p1 = {"a": 0.4, "b": 0.3, "end": 0.2, "unk": 0.1}
    p2 = {"sa": 0.6, "ab": 0.5, "bend": 0.7}
    bo = {"bo_s": (1 - 0.6) / (1 - 0.4), "bo_a": (1 - 0.5) / (1 - 0.3), "bo_b": (1 - 0.7) / (1 - 0.2)}
    return ARPA.format(**{k: f"{math.log10(v):.6f}" for k, v in {**p1, **p2, **bo}.items()})


def test_a_word_arpa_becomes_a_word_lm_with_the_same_probabilities(tmp_path: Path) -> None:
    path = tmp_path / "lm.arpa"
    path.write_text(_arpa_text())
    arpa = read_arpa(path)
    lm = word_lm_from_arpa(path)
    assert set(lm.words) == {"a", "b"}
    names = {0: "<s>", 1: "</s>", 2: "<unk>", lm.words["a"]: "a", lm.words["b"]: "b"}
    for context in (0, 2, lm.words["a"], lm.words["b"]):
        for target in (1, 2, lm.words["a"], lm.words["b"]):
            ours = float(lm.ngram.log_prob_of(torch.tensor([[context]]), torch.tensor([target]))[0])
            expected = arpa_log10_prob(arpa, (names[context],), names[target]) * math.log(10)
            assert ours == pytest.approx(expected, abs=1e-5), (names[context], names[target])
    # and the sentence scores the rescorer uses: log p(a|<s>) + log p(b|a) + log p(</s>|b)
    scores = lm.sentence_scores(["a b"])
    assert float(scores.log_probs[0]) == pytest.approx(math.log(0.6 * 0.5 * 0.7), abs=1e-5)


def test_a_token_arpa_drops_what_the_tokenizer_lacks(tmp_path: Path) -> None:
    path = tmp_path / "tokens.arpa"
    path.write_text(_arpa_text())
    pieces = {"a": 3, "b": 4}
    lm = token_lm_from_arpa(path, pieces.get, vocab_size=5, pad_id=0)
    probs = lm.log_probs(torch.tensor([[0]]))[0].exp()  # after the sentence start
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(probs[3]) > float(probs[4]) > 0 and float(probs[0]) < 1e-9  # the blank: never predicted


def test_a_file_that_is_not_arpa_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nope.arpa"
    path.write_text("hello world\n")
    with pytest.raises(ValueError, match="not an ARPA"):
        read_arpa(path)


def test_asr_train_lm_imports_an_arpa_word_lm_as_the_default_rescoring(
    random_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = shutil.copytree(random_model_dir, tmp_path / "model")
    arpa = tmp_path / "domain.arpa"
    arpa.write_text(_arpa_text())
    code = main(
        ["lm", "--model", str(model_dir), "--arpa", str(arpa), "--words", "--set-default", "--rescore-weight", "0.3"]
    )
    assert code == 0
    summary = last_json_line(capsys)
    assert summary["arpa"] == str(arpa) and summary["words"] == 2 and summary["entries"] > 0
    _, search = load_model_and_search(model_dir)
    assert search.rescorer is not None
    assert set(search.rescorer.lm.words) == {"a", "b"}
