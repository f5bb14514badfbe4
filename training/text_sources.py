"""Deterministic English sentence generators for synthetic training transcripts.

Every sentence comes out normalized (``training.text_normalize``), 3-20 words, words of
letters and intra-word apostrophes only: no digits, because espeak-ng would read them aloud
in words the reference does not contain. Three sources are mixed (weights configurable):

- ``markov``: ``essential_generators``' Markov text trained on Wikipedia, cut at punctuation
  into runs of purely alphabetic, reasonably common words (encyclopedic register);
- ``wordfreq``: random word sequences over ``wordfreq``'s 20k most frequent English words
  with flattened Zipf weights (vocabulary coverage: the ~10k most common words all occur);
- ``everyday``: a weighted grammar of conversational English (``data/everyday_grammar.txt``):
  people, tenses, requests, questions, times, prices and numbers spelled as words.

Randomness comes only from the ``random.Random`` passed in, so a sentence is a function of
that generator's state (the synthesizer seeds one per utterance). Sentences of the held-out
lists (``data/heldout_sentences.txt``, ``data/ci_sentences.txt``) are never produced for
training, nor are sentences that contain one of them.

This module mixes the sources; they live in ``training.markov_text``, ``training.wordfreq_text`` and
``training.grammar``, the held-out lists and transcript rules in ``training.sentence_lists``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Protocol

from training.grammar import Grammar, everyday_grammar
from training.markov_text import MarkovSource
from training.sentence_lists import MAX_WORDS, MIN_WORDS, contains_reserved, is_valid_transcript, reserved_sentences
from training.text_normalize import normalize_text
from training.wordfreq_text import WordfreqSource


class SentenceSource(Protocol):
    """A producer of candidate sentences; ``None`` means "nothing usable this time"."""

    name: str

    def sample(self, rng: random.Random) -> str | None: ...


class EverydaySource:
    """Conversational sentences from the everyday grammar."""

    name = "everyday"

    def __init__(self, grammar: Grammar | None = None):
        self._grammar = grammar or everyday_grammar()

    def sample(self, rng: random.Random) -> str | None:
        return self._grammar.generate(rng)


@dataclass(frozen=True)
class MixtureWeights:
    """Relative weights of the three sources (need not sum to 1)."""

    markov: float = 0.40
    wordfreq: float = 0.25
    everyday: float = 0.35

    def __post_init__(self) -> None:
        values = [getattr(self, field.name) for field in fields(self)]
        if any(value < 0 for value in values) or sum(values) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum: {self}")

    @classmethod
    def parse(cls, text: str) -> MixtureWeights:
        """``"0.4,0.25,0.35"`` (markov, wordfreq, everyday) or ``"markov=0.5,everyday=0.5"``."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        names = [field.name for field in fields(cls)]
        try:
            if all("=" in part for part in parts):
                values = {name: 0.0 for name in names}
                for part in parts:
                    key, value = part.split("=", 1)
                    if key.strip() not in values:
                        raise ValueError(f"unknown source {key.strip()!r}")
                    values[key.strip()] = float(value)
                return cls(**values)
            if len(parts) == len(names):
                return cls(*(float(part) for part in parts))
        except ValueError as error:
            raise ValueError(f"bad mixture {text!r}: {error}") from error
        raise ValueError(f"bad mixture {text!r}: give {len(names)} weights ({', '.join(names)})")


_SOURCE_FACTORIES = {"markov": MarkovSource, "wordfreq": WordfreqSource, "everyday": EverydaySource}


class TrainingSentences:
    """The training-text mixture: pick a source by weight, keep only clean, unreserved text.

    Sources are built on first use, so a mixture without Markov text never loads its model.
    """

    def __init__(
        self,
        weights: MixtureWeights | None = None,
        *,
        min_words: int = MIN_WORDS,
        max_words: int = MAX_WORDS,
        reserved: frozenset[str] | None = None,
        sources: Mapping[str, SentenceSource] | None = None,
        max_attempts: int = 200,
    ):
        weights = weights or MixtureWeights()
        self._names = [name for name in _SOURCE_FACTORIES if getattr(weights, name) > 0]
        self._cum_weights = list(itertools.accumulate(getattr(weights, name) for name in self._names))
        self._sources: dict[str, SentenceSource] = dict(sources or {})
        self._min_words, self._max_words = min_words, max_words
        self._reserved = reserved_sentences() if reserved is None else reserved
        self._max_attempts = max_attempts

    def _source(self, name: str) -> SentenceSource:
        if name not in self._sources:
            self._sources[name] = _SOURCE_FACTORIES[name]()
        return self._sources[name]

    def accepts(self, text: str) -> bool:
        """Clean (see ``is_valid_transcript``) and not, nor containing, a reserved sentence."""
        return is_valid_transcript(text, self._min_words, self._max_words) and not contains_reserved(
            text, self._reserved
        )

    def sample(self, rng: random.Random) -> tuple[str, str]:
        """``(sentence, source name)``; retries rejected candidates with the same ``rng``."""
        for _ in range(self._max_attempts):
            (name,) = rng.choices(self._names, cum_weights=self._cum_weights)
            candidate = self._source(name).sample(rng)
            if candidate is None:
                continue
            text = normalize_text(candidate)
            if self.accepts(text):
                return text, name
        raise RuntimeError(f"no acceptable sentence in {self._max_attempts} attempts")

    def generate(self, rng: random.Random, count: int) -> list[str]:
        """``count`` sentences drawn one after the other from ``rng``."""
        return [self.sample(rng)[0] for _ in range(count)]
