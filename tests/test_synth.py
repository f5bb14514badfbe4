"""Data synthesis: text normalization, training-text sources, held-out lists, espeak-ng synthesis."""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import synth, utterances
from training import text_sources as ts
from training.grammar import everyday_grammar
from training.markov_text import _alphabetic_runs
from training.number_words import number_to_words, ordinal_to_words, year_to_words
from training.sentence_lists import (
    MAX_WORDS,
    MIN_WORDS,
    ci_sentences,
    contains_reserved,
    dev_sentences,
    heldout_sentences,
    is_speakable_word,
    is_valid_transcript,
    reserved_sentences,
)
from training.text_normalize import normalize_text
from training.voices import HELDOUT_ONLY_VARIANTS, VARIANTS, voice_pool
from training.wordfreq_text import common_vocabulary

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


# ---------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Don't", "don't"),
        ("'hello'", "hello"),
        ("Hello, World!", "hello world"),
        ("well-known  co-operation", "well known co operation"),
        ("It\u2019s   OK...", "it's ok"),
        ("the dogs' bowls", "the dogs bowls"),
        ("rock 'n' roll", "rock n roll"),
        ("Caf\u00e9 na\u00efve", "cafe naive"),
        ("room 42b, floor 3", "room b floor"),
        ("e-mail: a@b.com", "e mail a b com"),
        ("  \t\n ", ""),
        ("WHAT?! -- no:way", "what no way"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_text_is_idempotent() -> None:
    for text in ["Don't stop -- it's 'Hello', WORLD!", "o'clock's ''quoted''", "x - y"]:
        once = normalize_text(text)
        assert normalize_text(once) == once


# ---------------------------------------------------------------------------- numbers and grammar


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (312, "three hundred twelve"),
        (2005, "two thousand five"),
        (21_000, "twenty one thousand"),
    ],
)
def test_number_to_words(number: int, words: str) -> None:
    assert number_to_words(number) == words


def test_number_words_with_and_ordinals_and_years() -> None:
    assert number_to_words(312, use_and=True) == "three hundred and twelve"
    assert ordinal_to_words(21) == "twenty first"
    assert ordinal_to_words(30) == "thirtieth"
    assert year_to_words(1998) == ["nineteen ninety eight"]
    assert "twenty fifteen" in year_to_words(2015)
    assert year_to_words(1905) == ["nineteen oh five"]


def test_grammar_generates_and_recognizes_its_own_sentences() -> None:
    grammar = everyday_grammar()
    rng = random.Random(5)
    for _ in range(50):
        sentence = grammar.generate(rng)
        assert grammar.can_generate(sentence), sentence
    assert not grammar.can_generate("colorless green ideas sleep furiously")


def test_grammar_words_are_speakable() -> None:
    unspeakable = [word for word in everyday_grammar().vocabulary() if not is_speakable_word(word)]
    assert unspeakable == []


# ---------------------------------------------------------------------------- held-out lists


def _check_sentence_list(sentences: tuple[str, ...], count: int) -> None:
    assert len(sentences) == count
    assert len(set(sentences)) == count
    for sentence in sentences:
        assert is_valid_transcript(sentence, 6, 16), sentence


def test_heldout_ci_and_dev_lists() -> None:
    _check_sentence_list(heldout_sentences(), 200)
    _check_sentence_list(ci_sentences(), 30)
    _check_sentence_list(dev_sentences(), 148)
    assert not set(heldout_sentences()) & set(ci_sentences())
    assert not set(dev_sentences()) & (set(heldout_sentences()) | set(ci_sentences()))
    assert set(dev_sentences()) <= reserved_sentences()
    # Everyday vocabulary: every word among the 20k most frequent English words.
    common = common_vocabulary(20_000)
    lists = heldout_sentences() + ci_sentences() + dev_sentences()
    rare = {w for s in lists for w in s.split() if w not in common}
    assert rare == set()


def test_grammar_cannot_reproduce_heldout_sentences() -> None:
    grammar = everyday_grammar()
    reproducible = [s for s in heldout_sentences() + ci_sentences() if grammar.can_generate(s)]
    assert reproducible == []


# ---------------------------------------------------------------------------- training text


def test_training_sentences_are_clean_and_never_held_out() -> None:
    reserved = reserved_sentences()
    mixture = ts.TrainingSentences()
    rng = random.Random(2024)
    samples = [mixture.sample(rng) for _ in range(1500)]
    assert {source for _, source in samples} == {"markov", "wordfreq", "everyday"}
    for text, _ in samples:
        assert MIN_WORDS <= len(text.split()) <= MAX_WORDS
        assert re.fullmatch(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*", text), text
        assert not any(char.isdigit() for char in text)
        assert not contains_reserved(text, reserved), text


class _ScriptedSource:
    """Returns its sentences in turn: lets a test feed held-out text to the mixture."""

    name = "everyday"

    def __init__(self, sentences: list[str]):
        self._sentences = iter(sentences)

    def sample(self, rng: random.Random) -> str | None:
        return next(self._sentences)


def test_reserved_sentences_are_filtered_after_normalization() -> None:
    heldout = heldout_sentences()[0]
    scripted = _ScriptedSource(
        [
            heldout.upper() + "!",  # the held-out sentence itself, before normalization
            f"well {heldout} right",  # a sentence that contains it
            "Nice to see you again.",
        ]
    )
    mixture = ts.TrainingSentences(ts.MixtureWeights(0, 0, 1), sources={"everyday": scripted})
    assert mixture.sample(random.Random(0)) == ("nice to see you again", "everyday")


def test_training_text_is_deterministic() -> None:
    def draw(seed: int) -> list[str]:
        return ts.TrainingSentences().generate(random.Random(seed), 40)

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_mixture_weights_parse() -> None:
    assert ts.MixtureWeights.parse("0.4,0.25,0.35") == ts.MixtureWeights()
    assert ts.MixtureWeights.parse("everyday=1") == ts.MixtureWeights(0, 0, 1)
    with pytest.raises(ValueError):
        ts.MixtureWeights.parse("1,2")
    with pytest.raises(ValueError):
        ts.MixtureWeights.parse("poetry=1")


def test_markov_text_is_cut_into_alphabetic_runs() -> None:
    text = (
        'In 1998 the plant closed. The old mill, built by "local" workers, stood near the U.S. '
        "border for well-known reasons; the owners left. Caf\u00e9 owners left. It's quiet now"
    )
    runs = [" ".join(run) for run in _alphabetic_runs(text)]
    assert runs == [
        "the old mill",
        "built by",
        "local",
        "workers",
        "stood near the",
        "border for well known reasons",
        "the owners left",
        "it's quiet now",
    ]


# ---------------------------------------------------------------------------- voices


def test_voice_pools_are_disjoint() -> None:
    train, heldout = set(voice_pool("train")), set(voice_pool("heldout"))
    assert train and heldout and not train & heldout
    train_variants = {voice.partition("+")[2] for voice in train}
    heldout_variants = {voice.partition("+")[2] for voice in heldout}
    assert set(HELDOUT_ONLY_VARIANTS) <= heldout_variants - train_variants
    assert len(heldout_variants & train_variants) > 10  # also unseen combinations of seen parts


def test_voice_variants_exist() -> None:
    variants_dir = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v")
    if not variants_dir.is_dir():
        pytest.skip("espeak-ng data folder not found")
    assert set(VARIANTS) <= {path.name for path in variants_dir.iterdir()}


# ---------------------------------------------------------------------------- synthesis


@needs_espeak
def test_synthesize_sentence_gives_clean_speech() -> None:
    audio, rate = synth.synthesize_sentence("can you call me back tomorrow morning", "en-us+m3", 170, 50)
    assert rate == 16000 and audio.dtype == np.float32
    assert 1.0 < len(audio) / rate < 5.0
    assert 0.01 < float(np.abs(audio).max()) <= 1.0
    audio_8k, rate_8k = synth.synthesize_sentence("hello there", sample_rate=8000)
    assert rate_8k == 8000 and len(audio_8k) > 0


def _read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_espeak
def test_synthesis_is_deterministic_and_manifest_is_valid(tmp_path: Path) -> None:
    first = synth.synthesize(tmp_path / "a", 8, seed=3, split="train", jobs=1, progress=False)
    second = synth.synthesize(tmp_path / "b", 8, seed=3, split="train", jobs=2, progress=False)
    assert first.read_text() == second.read_text()

    rows = _read_manifest(first)
    assert [row["audio"] for row in rows] == [f"audio/{n:07d}.wav" for n in range(1, 9)]
    train_voices = set(voice_pool("train"))
    for row in rows:
        assert row["language"] == "en" and row["voice"] in train_voices
        assert row["text"] == normalize_text(row["text"]) and row["text"]
        assert (first.parent / row["audio"]).read_bytes() == (second.parent / row["audio"]).read_bytes()
        audio, rate = sf.read(first.parent / row["audio"], dtype="float32")
        assert rate == row["sample_rate"] and rate in utterances.SAMPLE_RATES
        assert sf.info(first.parent / row["audio"]).subtype == "PCM_16"
        assert audio.ndim == 1 and abs(len(audio) / rate - row["duration"]) < 1e-3
        assert np.abs(audio).max() > 0.01

    other_seed = synth.synthesize(tmp_path / "c", 8, seed=4, split="train", jobs=1, progress=False)
    assert other_seed.read_text() != first.read_text()


@needs_espeak
def test_heldout_split_uses_heldout_text_and_voices(tmp_path: Path) -> None:
    manifest = synth.synthesize(tmp_path, 3, seed=0, split="heldout", jobs=1, progress=False)
    rows = _read_manifest(manifest)
    assert [row["text"] for row in rows] == list(heldout_sentences()[:3])
    assert all(row["voice"] in voice_pool("heldout") for row in rows)


@needs_espeak
def test_command_line_with_sentence_file(tmp_path: Path) -> None:
    sentences = tmp_path / "sentences.txt"
    # The held-out sentence must be dropped from training text; the others cycle in order.
    sentences.write_text(f"Hello there, friend!\n{heldout_sentences()[1]}\n# comment\nsee you soon\n")
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path / "out"), "--num-utterances", "3", "--jobs", "1", "--no-progress"]
        + ["--sentences", str(sentences)]
    )
    assert synth.run(args) == 0
    rows = _read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [row["text"] for row in rows] == ["hello there friend", "see you soon", "hello there friend"]


def _espeak_crash_on(numbers: set[int], real_render=utterances.render_utterance):
    """``render_utterance`` that fails like an espeak-ng crash (it segfaulted on one voice in a real run)."""

    def render(spec: utterances.UtteranceSpec) -> np.ndarray:
        if spec.number in numbers:
            raise RuntimeError(f"espeak-ng failed (-11) for voice {spec.voice!r}: ")
        return real_render(spec)

    return render


@needs_espeak
def test_an_espeak_crash_skips_the_utterance_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(utterances, "render_utterance", _espeak_crash_on({2}))
    rows = _read_manifest(synth.synthesize(tmp_path, 4, seed=3, split="train", jobs=1, progress=False))
    assert [row["index"] for row in rows] == [1, 3, 4]
    assert not (tmp_path / "audio" / "0000002.wav").exists()


@needs_espeak
def test_many_espeak_failures_stop_the_run_without_a_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(utterances, "render_utterance", _espeak_crash_on({1, 2, 3}))
    with pytest.raises(RuntimeError, match="failed on 3 of 4 utterances"):
        synth.synthesize(tmp_path, 4, seed=3, split="train", jobs=1, progress=False)
    assert not (tmp_path / "manifest.jsonl").exists()
