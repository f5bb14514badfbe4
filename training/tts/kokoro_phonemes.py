"""Text -> Kokoro-82M input tokens, through espeak-ng's IPA (``espeak-ng -q --ipa --tie=^ -v LANG``).

Kokoro was trained on misaki's phoneme strings: IPA with a few one-letter shorthands (English
diphthongs ``A`` = eɪ, ``I`` = aɪ, ``W`` = aʊ, ``Y`` = ɔɪ, ``O`` = oʊ, ``Q`` = əʊ; affricates as
ligatures ``ʧ ʤ ʦ ʣ``) and punctuation kept. espeak-ng's IPA is close: with ``--tie=^`` it marks
the two-letter phonemes, which are rewritten to those symbols here; everything else outside the
model's ``vocab.json`` (178 symbols) is dropped. espeak-ng drops punctuation and prints one line per
clause, so the text is split into clauses first and each clause's punctuation is put back after
its phonemes (Kokoro's prosody depends on it).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping

# espeak-ng voice used to phonemize each language (Kokoro has no voice of its own per language).
ESPEAK_LANGUAGE = {"en": "en-us", "de": "de", "fr": "fr-fr", "es": "es", "it": "it"}

# Tied pairs for every language (misaki's symbols for affricates).
_AFFRICATES = {"t^ʃ": "ʧ", "d^ʒ": "ʤ", "t^s": "ʦ", "d^z": "ʣ", "t^ɕ": "ʨ", "d^ʑ": "ʥ"}
# English only: misaki's American diphthong letters, rhotic r, and sounds English phonemes lack.
_ENGLISH = {
    "e^ɪ": "A",
    "a^ɪ": "I",
    "a^ʊ": "W",
    "ɔ^ɪ": "Y",
    "o^ʊ": "O",
    "ə^ʊ": "Q",
    "r": "ɹ",
    "x": "k",
    "ç": "k",
    "ɐ": "ə",
    "ʔ": "t",
}
_CLAUSE = re.compile(r"([^,.;:!?]+)([,.;:!?]*)")
_LANGUAGE_SWITCH = re.compile(r"\([a-z-]+\)")  # espeak-ng marks words it reads in another language


def espeak_ipa(text: str, language: str) -> str:
    """espeak-ng's IPA for one clause of ``text`` in ``language`` (ties as ``^``, one line)."""
    voice = ESPEAK_LANGUAGE[language]
    result = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", voice, "--", text],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return " ".join(result.stdout.split())


def ipa_to_kokoro(ipa: str, language: str) -> str:
    """Rewrite espeak-ng IPA (with ``^`` ties) into Kokoro's symbol set (unknown symbols kept)."""
    ipa = _LANGUAGE_SWITCH.sub("", ipa)
    table = {**_AFFRICATES, **(_ENGLISH if language == "en" else {})}
    # Longest keys first, so a tied pair is rewritten before its single letters.
    for source in sorted(table, key=len, reverse=True):
        ipa = ipa.replace(source, table[source])
    ipa = ipa.replace("ʲ", "j").replace(":", "ː")
    return ipa.replace("^", "")


def phonemize(text: str, language: str) -> str:
    """Kokoro phoneme string of ``text``: each clause's phonemes followed by its punctuation."""
    if language not in ESPEAK_LANGUAGE:
        raise ValueError(f"Kokoro has no phonemizer for {language!r}; known: {sorted(ESPEAK_LANGUAGE)}")
    pieces = []
    for words, punctuation in _CLAUSE.findall(text):
        if words.strip():
            pieces.append(ipa_to_kokoro(espeak_ipa(words.strip(), language), language) + punctuation)
    return " ".join(pieces)


def tokenize(phonemes: str, vocab: Mapping[str, int]) -> list[int]:
    """Token ids of ``phonemes`` (symbols the vocabulary lacks are dropped), without the pad ids."""
    return [vocab[symbol] for symbol in phonemes if symbol in vocab]


def unknown_symbols(phonemes: str, vocab: Mapping[str, int]) -> set[str]:
    """Symbols of ``phonemes`` that ``tokenize`` drops (for diagnostics and tests)."""
    return {symbol for symbol in phonemes if symbol not in vocab}
