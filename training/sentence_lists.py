"""The fixed sentence lists (held-out, CI, dev) and the rules a training transcript must meet.

Held-out and CI sentences are reserved: training text never is, nor contains, one of them.
A transcript is normalized, 3-20 words, each word one espeak-ng says as it is written.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from training.text_normalize import normalize_text

DATA_DIR = Path(__file__).resolve().parent / "data"
HELDOUT_SENTENCES_FILE = DATA_DIR / "heldout_sentences.txt"
CI_SENTENCES_FILE = DATA_DIR / "ci_sentences.txt"
DEV_SENTENCES_FILE = DATA_DIR / "dev_sentences.txt"
GRAMMAR_FILE = DATA_DIR / "everyday_grammar.txt"
UNSAFE_WORDS_FILE = DATA_DIR / "espeak_unsafe_words.txt"

MIN_WORDS = 3
MAX_WORDS = 20

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_SINGLE_LETTER_WORDS = frozenset({"a", "i"})


def read_sentence_file(path: Path) -> list[str]:
    """Normalized sentences of a text file, one per line; blank lines and ``#`` comments skipped."""
    sentences = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            sentences.append(normalize_text(line))
    return sentences


@lru_cache(maxsize=1)
def heldout_sentences() -> tuple[str, ...]:
    """The 200 sentences of the held-out evaluation set, in file order."""
    return tuple(read_sentence_file(HELDOUT_SENTENCES_FILE))


@lru_cache(maxsize=1)
def ci_sentences() -> tuple[str, ...]:
    """The 30 sentences of the CI recognition test, in file order."""
    return tuple(read_sentence_file(CI_SENTENCES_FILE))


@lru_cache(maxsize=1)
def dev_sentences() -> tuple[str, ...]:
    """The hand-written development sentences that decoding weights are tuned on, in file order."""
    return tuple(read_sentence_file(DEV_SENTENCES_FILE))


@lru_cache(maxsize=1)
def reserved_sentences() -> frozenset[str]:
    """Every sentence that must never appear in (or inside) a training transcript."""
    return frozenset(heldout_sentences()) | frozenset(ci_sentences()) | frozenset(dev_sentences())


@lru_cache(maxsize=1)
def unsafe_words() -> frozenset[str]:
    """Words espeak-ng reads as something else (``st`` -> saint, ``ii`` -> roman two ...)."""
    return frozenset(read_sentence_file(UNSAFE_WORDS_FILE))


def is_speakable_word(word: str) -> bool:
    """True when espeak-ng says ``word`` as the word a transcript would write for it."""
    if not _WORD.fullmatch(word):
        return False
    # Lone letters are mostly debris of split tokens ("don t", "u s"); espeak spells them.
    if len(word) == 1 and word not in _SINGLE_LETTER_WORDS:
        return False
    return word not in unsafe_words()


def is_valid_transcript(text: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> bool:
    """Normalized, ``min_words``..``max_words`` words, every word speakable."""
    words = text.split()
    return (
        min_words <= len(words) <= max_words
        and text == normalize_text(text)
        and all(is_speakable_word(word) for word in words)
    )


def contains_reserved(text: str, reserved: frozenset[str]) -> bool:
    """``text`` is, or contains as whole words, one of the ``reserved`` sentences."""
    if text in reserved:
        return True
    padded = f" {text} "
    return any(f" {sentence} " in padded for sentence in reserved if len(sentence) < len(text))
