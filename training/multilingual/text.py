"""Training and held-out sentences per language: a mixture of text sources, held-out text kept out.

Sources (weights per language in ``SOURCE_WEIGHTS``):

- ``templates``: the hand-written template grammars (``training.multilingual.templates``);
- ``filler``: random sequences of ``wordfreq``'s 20k most frequent words with flattened Zipf weights
  (vocabulary coverage beyond the templates);
- ``english``: for English only, the existing mixture of ``training.text_sources`` (Markov text,
  word sequences, the everyday grammar).

Held out: ``training/data/heldout_<lang>.txt`` (English: the existing 200 held-out sentences of
``training.sentence_lists``, with its CI and dev sentences also reserved) and, for French, the
prompts of the real-speech dev set (``training.devsets.asterisk_fr``) when that package is
installed. A training sentence never is, nor contains as whole words, a reserved sentence.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from training.multilingual.normalize import check_language, is_reference, normalize
from training.multilingual.templates import DATA_DIR, TemplateSource
from training.multilingual.vocab import frequent_words
from training.sentence_lists import contains_reserved, reserved_sentences

SOURCE_WEIGHTS: dict[str, dict[str, float]] = {
    "en": {"templates": 0.35, "english": 0.65},
    **{language: {"templates": 0.75, "filler": 0.25} for language in ("de", "fr", "es", "it")},
}
MIN_WORDS, MAX_WORDS = 3, 30


def heldout_file(language: str) -> Path:
    """The hand-written held-out sentences of ``language`` (English: ``heldout_sentences.txt``)."""
    check_language(language)
    return DATA_DIR / ("heldout_sentences.txt" if language == "en" else f"heldout_{language}.txt")


@lru_cache(maxsize=8)
def heldout_texts(language: str) -> tuple[str, ...]:
    """The held-out sentences of ``language`` as written (cased, punctuated), in file order."""
    lines = heldout_file(language).read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _french_dev_prompts() -> frozenset[str]:
    """The French real-speech dev set's prompts, normalized (empty if the package is not installed)."""
    from training.devsets import asterisk_fr

    if not asterisk_fr.TRANSCRIPTS.exists():
        return frozenset()
    texts = (text for text in asterisk_fr.read_transcripts().values() if asterisk_fr.usable(text))
    return frozenset(filter(None, (normalize(text, "fr") for text in texts)))


@lru_cache(maxsize=8)
def reserved(language: str) -> frozenset[str]:
    """Normalized sentences that training text must never be or contain, for ``language``."""
    check_language(language)
    sentences = frozenset(normalize(text, language) for text in heldout_texts(language))
    if language == "en":
        sentences |= reserved_sentences()
    if language == "fr":
        sentences |= _french_dev_prompts()
    return sentences


class FillerSource:
    """Random word sequences over a language's frequent words; weight of rank r is (r + 10) ** -0.5.

    Exponent 1 would be Zipf's law (the top words dominate); 0.5 lets the ~10k most common words
    all occur in a few ten thousand sentences.
    """

    name = "filler"

    def __init__(self, language: str, vocabulary_size: int = 20_000, min_words: int = 3, max_words: int = 12):
        self._words = frequent_words(language, vocabulary_size)
        self._cum_weights = tuple(itertools.accumulate((rank + 10.0) ** -0.5 for rank in range(len(self._words))))
        self._min_words, self._max_words = min_words, max_words

    def sample(self, rng: random.Random) -> str:
        count = rng.randint(self._min_words, self._max_words)
        return " ".join(rng.choices(self._words, cum_weights=self._cum_weights, k=count))


class EnglishMixtureSource:
    """The English model's existing training-text mixture (``training.text_sources.TrainingSentences``)."""

    name = "english"

    def __init__(self) -> None:
        from training.text_sources import TrainingSentences

        self._mixture = TrainingSentences()

    def sample(self, rng: random.Random) -> str:
        return self._mixture.sample(rng)[0]


@dataclass(frozen=True)
class Sentence:
    """One transcript: ``spoken`` is what the TTS reads, ``text`` the normalized reference."""

    spoken: str
    text: str
    source: str
    language: str


class LanguageText:
    """The training sentences of one language: sources mixed by weight, reserved text rejected.

    Sources are built on first use (the English Markov model takes seconds and 450 MB to load).
    """

    def __init__(self, language: str, weights: dict[str, float] | None = None, max_attempts: int = 100):
        check_language(language)
        self.language = language
        weights = weights or SOURCE_WEIGHTS[language]
        self._names = [name for name, weight in weights.items() if weight > 0]
        self._cum_weights = list(itertools.accumulate(weights[name] for name in self._names))
        self._sources: dict[str, TemplateSource | FillerSource | EnglishMixtureSource] = {}
        self._reserved = reserved(language)
        # Containment is checked for reserved sentences of 3+ words only: the French dev prompts
        # include single words ("merci", "bonjour") that no training text could avoid.
        self._reserved_phrases = frozenset(s for s in self._reserved if len(s.split()) >= MIN_WORDS)
        self._max_attempts = max_attempts

    def _source(self, name: str) -> TemplateSource | FillerSource | EnglishMixtureSource:
        if name not in self._sources:
            factories: dict[str, Callable[[], TemplateSource | FillerSource | EnglishMixtureSource]] = {
                "templates": lambda: TemplateSource(self.language),
                "filler": lambda: FillerSource(self.language),
                "english": EnglishMixtureSource,
            }
            self._sources[name] = factories[name]()
        return self._sources[name]

    def accepts(self, text: str) -> bool:
        """A clean reference of 3..30 words that is no reserved sentence and contains none of 3+ words."""
        if not is_reference(text, self.language, MIN_WORDS, MAX_WORDS) or text in self._reserved:
            return False
        return not contains_reserved(text, self._reserved_phrases)

    def sample(self, rng: random.Random) -> Sentence:
        """One training sentence drawn with ``rng`` (rejected candidates are redrawn from the same ``rng``)."""
        for _ in range(self._max_attempts):
            (name,) = rng.choices(self._names, cum_weights=self._cum_weights)
            spoken = self._source(name).sample(rng)
            text = normalize(spoken, self.language)
            if self.accepts(text):
                return Sentence(spoken, text, name, self.language)
        raise RuntimeError(f"no acceptable {self.language} sentence in {self._max_attempts} attempts")


def heldout_sentence(language: str, index: int) -> Sentence:
    """Held-out sentence number ``index`` of ``language`` (cycled), as spoken and as reference."""
    texts = heldout_texts(language)
    spoken = texts[index % len(texts)]
    return Sentence(spoken, normalize(spoken, language), "heldout", language)


def heldout_count(language: str) -> int:
    """How many held-out sentences ``language`` has."""
    return len(heldout_texts(language))
