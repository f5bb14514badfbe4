"""cpWER on hand-made hypotheses: the permutation, missing and extra channels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.tsot.cpwer import best_permutation, cpwer, speaker_references, word_errors


def test_word_errors() -> None:
    assert word_errors("a b c", "a b c") == 0
    assert word_errors("a b c", "a x c d") == 2
    assert word_errors("a b", "") == 2
    assert word_errors("", "a b c") == 3
    assert word_errors("", "") == 0


def test_the_permutation_with_fewest_errors_is_chosen() -> None:
    references = ["hello there my friend", "the train is late"]
    swapped = ["the train is late", "hello there my friend"]
    result = best_permutation(references, swapped)
    assert result.errors == 0 and result.reference_words == 8
    assert result.channel_of == (1, 0)
    # Without the permutation every word would be wrong or misplaced.
    assert word_errors(references[0], swapped[0]) + word_errors(references[1], swapped[1]) > 0
    assert cpwer([(references, swapped)]) == 0.0


def test_a_missing_channel_counts_as_deletions() -> None:
    result = best_permutation(["one two three", "four five"], ["one two three"])
    assert result.errors == 2 and result.channel_of == (0, None)
    assert cpwer([(["one two three", "four five"], ["one two three", ""])]) == pytest.approx(2 / 5)


def test_an_extra_channel_counts_as_insertions() -> None:
    result = best_permutation(["one two three"], ["one two three", "stray words"])
    assert result.errors == 2 and result.channel_of == (0,)
    assert cpwer([(["one two three"], ["stray words", "one two three"])]) == pytest.approx(2 / 3)


def test_corpus_cpwer_sums_errors_over_words() -> None:
    recordings = [
        (["a b c d"], ["a b c d"]),  # 0 of 4
        (["e f", "g h"], ["g x", "e f"]),  # 1 of 4, swapped
    ]
    assert cpwer(recordings) == pytest.approx(1 / 8)


def test_speaker_references(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    rows = [
        {
            "audio": "a.flac",
            "text": "x y",
            "speakers": [{"text": "y", "start": 1.0, "end": 2}, {"text": "x", "start": 0.2, "end": 1}],
        },
        {"audio": "b.flac", "text": "solo talker"},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert speaker_references(manifest) == [["x", "y"], ["solo talker"]]
