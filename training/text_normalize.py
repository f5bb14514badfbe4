"""Text normalization shared by training transcripts, references and hypotheses.

One function, used identically everywhere, so that WER compares words and never casing or
punctuation: lowercase letters a-z and apostrophes inside words survive, everything else
(punctuation, hyphens, digits, symbols) becomes a word boundary.
"""

from __future__ import annotations

import re
import unicodedata

# Typographic apostrophes and primes that people (and ASR hypotheses) use for "'".
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})
_NOT_LETTER_OR_APOSTROPHE = re.compile(r"[^a-z']+")
# An apostrophe survives only between two letters: "don't" stays, "'hello'" and "dogs'" lose it.
_LOOSE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r"\s+")


def _strip_accents(text: str) -> str:
    """``café`` -> ``cafe``: decompose and drop combining marks (better than dropping the letter)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def normalize_text(s: str) -> str:
    """Lowercase ``s``, keep words of letters a-z (with intra-word apostrophes), one space apart.

    >>> normalize_text("Don't  stop -- it's 'Hello', WORLD!")
    "don't stop it's hello world"
    """
    text = _strip_accents(s.translate(_APOSTROPHES)).casefold()
    text = _NOT_LETTER_OR_APOSTROPHE.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
