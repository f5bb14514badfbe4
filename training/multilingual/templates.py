"""The per-language template grammars (``training/data/templates_<lang>.txt``) and their slot fillers.

Each file is a weighted grammar in ``training.grammar``'s format (about 110 sentence templates per
language: everyday speech, questions, telephone menus, customer service, dates, times, amounts);
its word slots are merged with the code's slots of ``training.multilingual.vocab`` (numbers in
words, Faker names and places, frequent words). A generated sentence keeps its casing and
punctuation: it is what the TTS engine reads (question marks give questions their intonation);
``normalize`` makes the reference from it.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

from training.grammar import Grammar
from training.multilingual.normalize import check_language
from training.multilingual.vocab import number_slots, people_and_places, word_slot

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
# A Faker list longer than this (Italy's 15,000 towns) is cut to a fixed random sample, so the
# hand-listed big cities of the template file still come up often.
MAX_FAKER_VALUES = 600
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_SPACE_AFTER_OPENING = re.compile(r"([¿¡])\s+")


def template_file(language: str) -> Path:
    """``training/data/templates_<language>.txt``."""
    return DATA_DIR / f"templates_{language}.txt"


def _capped(values: list[str], language: str) -> list[str]:
    if len(values) <= MAX_FAKER_VALUES:
        return values
    return sorted(random.Random(f"faker-cap-{language}").sample(values, MAX_FAKER_VALUES))


@lru_cache(maxsize=8)
def template_grammar(language: str) -> Grammar:
    """The grammar of ``language``: its template file plus numbers, names, places and frequent words."""
    check_language(language)
    slots: dict[str, list[str]] = dict(number_slots(language))
    slots.update({name: _capped(values, language) for name, values in people_and_places(language).items()})
    slots["word"] = word_slot(language)
    return Grammar.parse(template_file(language).read_text(encoding="utf-8"), extra_slots=slots)


def tidy(sentence: str) -> str:
    """Undo the grammar's token spacing: ``Paris ?`` -> ``Paris?``."""
    sentence = _SPACE_AFTER_OPENING.sub(r"\1", sentence)
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", sentence).strip()


class TemplateSource:
    """Sentences of one language's template grammar (the ``templates`` text source)."""

    name = "templates"

    def __init__(self, language: str):
        self.language = language
        self._grammar = template_grammar(language)

    def sample(self, rng: random.Random) -> str:
        """One surface sentence (cased, punctuated, numbers in words) drawn with ``rng``."""
        return tidy(self._grammar.generate(rng))
