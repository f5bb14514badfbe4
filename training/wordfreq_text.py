"""Random word sequences over wordfreq's most frequent English words (the ``wordfreq`` text source)."""

from __future__ import annotations

import itertools
import random
from functools import lru_cache

from training.sentence_lists import MIN_WORDS, is_speakable_word


@lru_cache(maxsize=4)
def _wordfreq_words(size: int) -> tuple[str, ...]:
    import wordfreq

    return tuple(wordfreq.top_n_list("en", size))


@lru_cache(maxsize=4)
def common_vocabulary(size: int = 50_000) -> frozenset[str]:
    """Speakable words among wordfreq's ``size`` most frequent English words."""
    return frozenset(word for word in _wordfreq_words(size) if is_speakable_word(word))


class WordfreqSource:
    """Random word sequences over the most frequent English words, Zipf-like weights.

    Weight of the word of frequency rank r is (r + offset) ** -exponent. Exponent 1 would be
    Zipf's law (the top words dominate); 0.5 flattens it so that in a few tens of thousands of
    sentences the ~10k most common words all occur, while frequent words still come first.
    """

    name = "wordfreq"

    def __init__(
        self,
        vocabulary_size: int = 20_000,
        exponent: float = 0.5,
        offset: float = 10.0,
        min_words: int = MIN_WORDS,
        max_words: int = 14,
    ):
        ranked = [(rank, word) for rank, word in enumerate(_wordfreq_words(vocabulary_size), start=1)]
        kept = [(rank, word) for rank, word in ranked if is_speakable_word(word)]
        self._words = tuple(word for _, word in kept)
        self._cum_weights = tuple(itertools.accumulate((rank + offset) ** -exponent for rank, _ in kept))
        self._min_words, self._max_words = min_words, max_words

    def sample(self, rng: random.Random) -> str | None:
        count = rng.randint(self._min_words, self._max_words)
        return " ".join(rng.choices(self._words, cum_weights=self._cum_weights, k=count))
