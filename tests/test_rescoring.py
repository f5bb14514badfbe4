"""Word-LM rescoring of final hypotheses: the LM's sentence scores, the choice, files, config."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import Option, cli_args, json_lines, last_json_line, run_lm_command
from model_helpers import noisy_model
from safetensors.torch import save_file

from server.model.checkpoint import CheckpointError, load_model, save_model
from server.search.loading import load_model_and_search, save_search_files
from server.search.ngram_lm import build_ngram_lm
from server.search.rescoring import SENTENCE_END, SENTENCE_START, Rescorer, WordLM, build_word_lm, final_hypothesis
from training.bundle import with_ctc_head
from training.cli import main

SENTENCES = [
    "the roads get crowded after four",
    "the roads get crowded in the morning",
    "we leave after four",
    "it is crowded after dinner",
    "we leave in the morning",
] * 4


def test_sentence_log_prob_is_the_sum_of_the_word_log_probs_with_the_end() -> None:
    lm = build_word_lm(SENTENCES, order=3, min_count=1)
    text = "we leave after dinner"
    ids = lm.word_ids(text) + [SENTENCE_END]
    context, expected = [SENTENCE_START, SENTENCE_START], 0.0
    for word_id in ids:
        expected += lm.ngram.log_probs(torch.tensor([context]))[0, word_id].item()
        context = context[1:] + [word_id]
    batched = lm.sentence_scores([text, "the roads get crowded after four", ""]).log_probs
    assert batched[0].item() == pytest.approx(expected, abs=1e-4)
    # A seen sentence beats its misspelling; the empty sentence is just its end.
    assert batched[1] > lm.sentence_scores(["the roads get croaded after four"]).log_probs[0]
    assert batched[2].item() == pytest.approx(lm.ngram.log_probs(torch.tensor([[0, 0]]))[0, SENTENCE_END].item())


def test_the_sentence_end_is_modelled() -> None:
    lm = build_word_lm(SENTENCES, order=3, min_count=1)
    complete, cut = lm.sentence_scores(["the roads get crowded after four", "the roads get crowded after"]).log_probs
    assert complete > cut


def test_rare_words_are_the_unknown_word() -> None:
    lm = build_word_lm(SENTENCES + ["a zebra"], order=2, min_count=2)
    assert "zebra" not in lm.words and "crowded" in lm.words
    assert lm.word_ids("zebra crowded") == [2, lm.words["crowded"]]
    counted = lm.sentence_scores(["zebra crowded", "", "we leave"])
    assert counted.word_counts.tolist() == [2, 0, 2] and counted.unknown_counts.tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="max_words"):
        build_word_lm(SENTENCES, max_words=40_000)


def test_rescorer_prefers_known_words_and_never_picks_an_unused_slot() -> None:
    rescorer = Rescorer(build_word_lm(SENTENCES, order=3, min_count=1), weight=0.5, oov_penalty=2.0)
    texts = ["the roads get croaded after", "the roads get crowded after four", "the roads get crowded after four"]
    # The search slightly prefers the misspelling; the word LM overrules it. Slot 2 is unused (-inf).
    sentences = rescorer.lm.sentence_scores(texts)
    assert rescorer.best([-3.0, -4.0, -math.inf], sentences) == 1
    assert Rescorer(rescorer.lm, weight=0.0).best([-3.0, -4.0, -math.inf], sentences) == 0
    hypotheses = [[(5, 1)], [(6, 2)], []]

    def decode(ids: list[int]) -> str:
        return texts[ids[0] - 5] if ids else ""

    assert final_hypothesis(hypotheses, [-3.0, -4.0, -math.inf], None, decode) == 0
    assert final_hypothesis(hypotheses, [-math.inf, -4.0, -3.0], None, decode) == 2  # the best search score
    assert final_hypothesis(hypotheses, [-3.0, -4.0, -math.inf], rescorer, decode) == 1


def test_word_lm_file_round_trip_and_a_token_lm_is_refused(tmp_path: Path) -> None:
    lm = build_word_lm(SENTENCES, order=3, min_count=1)
    lm.save(tmp_path / "word_lm.safetensors", {"note": "test"})
    again = WordLM.load(tmp_path / "word_lm.safetensors")
    assert again.words == lm.words and again.ngram.info == {"note": "test"}
    texts = ["we leave after four", "crowded the four"]
    # fp16 storage
    assert torch.allclose(again.sentence_scores(texts).log_probs, lm.sentence_scores(texts).log_probs, atol=2e-3)
    build_ngram_lm([[1, 2, 3]], 10, order=2).save(tmp_path / "token_lm.safetensors")
    with pytest.raises(ValueError, match="not a word LM"):
        WordLM.load(tmp_path / "token_lm.safetensors")


def _with_word_lm(random_model_dir: Path, tmp_path: Path) -> Path:
    from training.lm import set_default_decoding, set_default_rescoring

    model_dir = shutil.copytree(random_model_dir, tmp_path / "model")
    vocab = load_model(model_dir).tokenizer.vocab_size
    build_ngram_lm([[1, 2, 3, 4], [2, 3, 5]] * 5, vocab, order=3).save(model_dir / "lm.safetensors")
    set_default_decoding(model_dir, "lm.safetensors", beam=3, lm_weight=0.4, token_bonus=0.5)
    build_word_lm(SENTENCES, order=3, min_count=1).save(model_dir / "word_lm.safetensors")
    set_default_rescoring(model_dir, "word_lm.safetensors", weight=0.7, word_bonus=0.2, oov_penalty=3.0)
    return model_dir


def test_model_with_rescoring_loads_and_survives_a_round_trip(random_model_dir: Path, tmp_path: Path) -> None:
    model, search = load_model_and_search(_with_word_lm(random_model_dir, tmp_path))
    rescorer = search.rescorer
    assert rescorer is not None and (rescorer.weight, rescorer.word_bonus, rescorer.oov_penalty) == (0.7, 0.2, 3.0)
    assert search.fused_lm is not None  # setting the rescoring kept the beam search's LM
    save_model(model, tmp_path / "again")
    save_search_files(search.resources, model.config, tmp_path / "again")
    _, again = load_model_and_search(tmp_path / "again")
    assert again.rescorer is not None and (tmp_path / "again" / "word_lm.safetensors").is_file()


def test_missing_or_corrupt_word_lm_is_named(random_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _with_word_lm(random_model_dir, tmp_path)
    (model_dir / "word_lm.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"word_lm\.safetensors: unreadable word language model"):
        load_model_and_search(model_dir)
    (model_dir / "word_lm.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"word_lm\.safetensors: missing word language model"):
        load_model_and_search(model_dir)


def test_lm_command_builds_the_word_lm_and_sets_the_rescoring(
    random_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = shutil.copytree(random_model_dir, tmp_path / "model")
    code = run_lm_command(model_dir, 400, words=True, rescore_weight=0.6, word_bonus=0.5, oov_penalty=2)
    assert code == 0
    summary = last_json_line(capsys)
    assert summary["order"] == 3 and summary["words"] > 100 and summary["file"].endswith("word_lm.safetensors")
    rescorer = load_model_and_search(model_dir)[1].rescorer
    assert rescorer is not None and (rescorer.weight, rescorer.word_bonus, rescorer.oov_penalty) == (0.6, 0.5, 2.0)
    sentence = "could you tell me where the station is"
    forward, backward = rescorer.lm.sentence_scores([sentence, " ".join(reversed(sentence.split()))]).log_probs
    assert forward > backward + 1.0


def test_tune_rescoring_grid_contains_the_plain_search_and_sets_the_best(
    random_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = save_model(noisy_model(random_model_dir), tmp_path / "model")
    for words in (False, True):
        assert run_lm_command(model_dir, 300, words=words, beam=3) == 0
    rows = []
    for index, (text, hz) in enumerate([("hello there", 300.0), ("see you soon", 500.0)]):
        t = np.arange(24000) / 16000
        path = tmp_path / f"{index}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
        rows.append(json.dumps({"audio": str(path), "text": text}))
    manifest = tmp_path / "valid.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    capsys.readouterr()

    def tune(**options: Option) -> int:
        return main(cli_args("tune-rescoring", model=model_dir, manifest=manifest, **options, set_default=True))

    assert tune(weights=[0, 1], word_bonuses=[0], oov_penalties=[0, 5]) == 0
    lines = json_lines(capsys)
    grid, summary = lines[:-1], lines[-1]
    assert len(grid) == 4 and summary["utterances"] == 2 and summary["beam"] == 3
    plain = next(p for p in grid if p["weight"] == 0 and p["oov_penalty"] == 0)
    assert plain["wer"] == summary["without_rescoring"]  # weight 0 = the search's own choice
    assert summary["oracle"] <= summary["best"]["wer"] <= summary["without_rescoring"]
    rescorer = load_model_and_search(model_dir)[1].rescorer
    assert rescorer is not None and (rescorer.weight, rescorer.oov_penalty) == (
        summary["best"]["weight"],
        summary["best"]["oov_penalty"],
    )
    # --beam decodes the K-best lists at another width and, with --set-default, keeps that
    # width with the weights tuned at it (the LM fusion settings stay).
    assert tune(beam=2, weights=[0, 1], word_bonuses=[0], oov_penalties=[0]) == 0
    assert last_json_line(capsys)["beam"] == 2
    _, search = load_model_and_search(model_dir)
    assert search.beam == 2 and search.fused_lm is not None and search.rescorer is not None
    # A model without a CTC head has no CTC weight to tune; with one (attached as asr-train
    # bundle does), the grid covers it and --set-default writes the best.
    with pytest.raises(SystemExit, match="no CTC head"):
        main(["tune-rescoring", "--model", str(model_dir), "--manifest", str(manifest), "--ctc-weights", "1"])
    model = load_model(model_dir)
    head = torch.nn.Linear(model.config.encoder.d_model, model.tokenizer.vocab_size)
    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    save_model(with_ctc_head(model, tmp_path / "head.safetensors"), model_dir)
    capsys.readouterr()
    assert tune(weights=[0], word_bonuses=[0], oov_penalties=[0], ctc_weights=[0, 2]) == 0
    lines = json_lines(capsys)
    grid, summary = lines[:-1], lines[-1]
    assert [p["ctc_weight"] for p in grid] == [0, 2] and summary["best_without_ctc"] == grid[0]
    assert summary["ctc_ms_per_final"] > 0
    assert load_model_and_search(model_dir)[1].rescorer.ctc_weight == summary["best"]["ctc_weight"]
