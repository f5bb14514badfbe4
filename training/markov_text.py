"""Wikipedia-style clauses from essential-generators' Markov model (the ``markov`` text source)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache

from training.sentence_lists import MAX_WORDS, MIN_WORDS
from training.text_normalize import normalize_text
from training.wordfreq_text import common_vocabulary


@lru_cache(maxsize=1)
def _markov_chain() -> tuple[dict, tuple[str, ...]]:
    """The Markov model (46 MB of JSON, ~3 s, ~450 MB): loaded once per process, on first use."""
    from essential_generators.markov_textgen import MarkovTextGenerator

    generator = MarkovTextGenerator()
    return generator.chain, tuple(generator.chain_list)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*<br/>\s*|\n+")
# A word token: optional opening quotes/brackets, letters with inner hyphens or apostrophes,
# then closing punctuation. Anything else (digits, "U.S.", "&", URLs) breaks the run.
_MARKOV_TOKEN = re.compile(r"""^["'(\[]*([A-Za-z]+(?:[-'][A-Za-z]+)*)'?(["')\].,;:!?]*)$""")
_CLAUSE_BREAK = re.compile(r"[.,;:!?)\]\"]")


def _markov_walk(chain: Mapping[str, dict], starts: Sequence[str], rng: random.Random, length: int) -> str:
    """``length`` words of the second-order Markov chain, driven by ``rng``.

    Re-implements ``MarkovTextGenerator.gen_text`` on our own generator (the library draws
    from the global ``random`` state) and marks each restart with a sentence end, so that
    runs never join two unrelated passages.
    """
    words: list[str] = []
    current = None
    while len(words) < length:
        entry = chain.get(current) if current else None
        if entry and entry.get("transitions"):
            (word,) = rng.choices(entry["transitions"], weights=entry["weights"])
            words.append(word)
            current = f"{words[-2]} {words[-1]}"
        else:
            current = rng.choice(starts)
            if words:
                words[-1] += "."
            words.extend(current.split())
    return " ".join(words)


def _alphabetic_runs(text: str) -> Iterator[list[str]]:
    """Runs of purely alphabetic words between punctuation, from sentences without digits."""
    for sentence in _SENTENCE_END.split(text):
        if not sentence.isascii() or any(char.isdigit() for char in sentence):
            continue
        run: list[str] = []
        for token in sentence.split():
            match = _MARKOV_TOKEN.match(token)
            if match is None or token[0] in "\"'([":
                if run:
                    yield run
                run = []
                if match is None:
                    continue
            run.extend(normalize_text(match.group(1)).split())
            if _CLAUSE_BREAK.search(match.group(2)):
                yield run
                run = []
        if run:
            yield run


class MarkovSource:
    """Wikipedia-style clauses from the essential-generators Markov model.

    Only runs whose words are all among the ``vocabulary_size`` most frequent English words
    are kept: that drops rare names and jargon, which would spend model capacity on words the
    everyday test sets never use.
    """

    name = "markov"

    def __init__(
        self,
        vocabulary_size: int = 50_000,
        walk_length: int = 80,
        min_words: int = MIN_WORDS,
        max_words: int = MAX_WORDS,
    ):
        self._vocabulary = common_vocabulary(vocabulary_size)
        self._walk_length = walk_length
        self._min_words, self._max_words = min_words, max_words

    def sample(self, rng: random.Random) -> str | None:
        chain, starts = _markov_chain()
        runs = [
            run
            for run in _alphabetic_runs(_markov_walk(chain, starts, rng, self._walk_length))
            if len(run) >= self._min_words and all(word in self._vocabulary for word in run)
        ]
        if not runs:
            return None
        # Weighted by length: the run around a random word, which favours whole sentences.
        (run,) = rng.choices(runs, weights=[len(run) for run in runs])
        if len(run) > self._max_words:  # a long clause: keep a random window of it
            size = rng.randint(max(self._min_words, self._max_words // 2), self._max_words)
            start = rng.randint(0, len(run) - size)
            run = run[start : start + size]
        return " ".join(run)
