"""Slot vocabularies of the multilingual templates: numbers in words, names and places, frequent words.

- numbers (``num2words``): counts, hours, minutes, years, the day of a date, digits, as each
  language says them in the templates' contexts (``am dritten Mai``, ``le premier mai``);
- people and places (``Faker``'s locale data, MIT): first and last names, cities (German and
  Italian lists of real towns; English, French and Spanish regions/states beside the cities the
  template files list), street names (Faker's generator with a fixed seed);
- frequent words (``wordfreq``): the ``{word}`` slot and the filler sentences of ``text.py``.

Everything is built once per process (``lru_cache``) and kept in a fixed order, so a generator
seeded the same way draws the same words.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache

from training.multilingual.normalize import EXTRA_LETTERS, cardinal, check_language, ordinal, year

FAKER_LOCALE = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "it": "it_IT"}
# Words of one or more letters of any Latin alphabet, spaces or hyphens between them: names that a
# TTS engine reads as written (no initials, abbreviations or digits: "e.V.", "S.A.", "3").
_NAME = re.compile(r"[^\W\d_]{2,}(?:[ '-][^\W\d_]{2,})*")
# French and Italian wordfreq tokens cut at the apostrophe ("l", "d", "qu"): not words on their own.
_ELISION_FRAGMENTS = {"fr": {"l", "d", "c", "j", "m", "n", "s", "t", "qu"}, "it": {"l", "d", "c", "s", "n", "m", "t"}}
_SINGLE_LETTER_WORDS = {
    "en": {"a", "i"},
    "de": set(),
    "fr": {"a", "à", "y"},
    "es": {"a", "e", "o", "u", "y"},
    "it": {"a", "e", "è", "i", "o"},
}


def _counts(low: int, high: int, language: str) -> list[str]:
    """Cardinals low..high for counting nouns ("{n} euros"); Spanish drops 21, 31 ... (veintiún/veintiuna)."""
    keep = (lambda n: n % 10 != 1 or n % 100 == 11) if language == "es" else (lambda n: True)
    return [cardinal(n, language) for n in range(low, high + 1) if keep(n)]


def _day_of_date(n: int, language: str) -> str:
    """The day number of a date as the templates' frame expects it."""
    if language == "en":
        return ordinal(n, language)  # "May twenty first"
    if language == "de":
        return ordinal(n, language) + "n"  # dative after "am": "am einundzwanzigsten"
    if n == 1:
        return {"fr": "premier", "es": "primero", "it": "primo"}[language]
    return cardinal(n, language)  # "le douze mai", "el doce de mayo", "il dodici maggio"


def _minutes(language: str) -> list[str]:
    """Minutes after the hour as said after "{hour} Uhr", "heures", "y", "e" (English: "oh five", "thirty")."""
    minutes = [cardinal(n, language) for n in range(10, 60)]
    if language == "en":
        minutes += [f"oh {cardinal(n, language)}" for n in range(1, 10)]
    else:
        minutes += [cardinal(n, language) for n in range(1, 10)]
    extra = {"es": ["cuarto", "media"], "it": ["un quarto", "mezza"], "fr": ["et quart", "et demie"]}
    return minutes + extra.get(language, [])


@lru_cache(maxsize=8)
def number_slots(language: str) -> dict[str, list[str]]:
    """Number slots of the templates (``{n_2_20}``, ``{hour}``, ``{year}`` ...) in ``language``'s words."""
    check_language(language)
    # Italian says "l'otto", "l'undici", which the templates' "il {day_ordinal}" cannot.
    days = [n for n in range(1, 32) if language != "it" or n not in (8, 11)]
    digits = [cardinal(n, language) for n in range(10)] + (["oh"] if language == "en" else [])
    return {
        "n_2_12": _counts(2, 12, language),
        "n_2_20": _counts(2, 20, language),
        "n_2_31": _counts(2, 31, language),
        "n_2_99": _counts(2, 99, language),
        "n_100_999": _counts(100, 999, language),
        "n_1000_9999": [cardinal(n, language) for n in range(1000, 10000, 7)],
        "hour": _counts(2, 23, language),  # Spanish: "a las veintiuna", not "veintiuno": left out
        "minute": _minutes(language),
        "year": [year(n, language) for n in range(1950, 2031)],
        "day_ordinal": [_day_of_date(n, language) for n in days],
        "digit": digits,
    }


def _faker_module(kind: str, language: str) -> object:
    return importlib.import_module(f"faker.providers.{kind}.{FAKER_LOCALE[language]}").Provider


def _names(values: object) -> list[str]:
    """The usable names of a Faker list (or weighted OrderedDict), sorted, without duplicates."""
    return sorted({value for value in values if isinstance(value, str) and _NAME.fullmatch(value)})  # type: ignore[attr-defined]


@lru_cache(maxsize=8)
def people_and_places(language: str) -> dict[str, list[str]]:
    """``first``, ``last``, ``city`` and ``street`` slot values from Faker's ``language`` locale."""
    check_language(language)
    import faker

    person, address = _faker_module("person", language), _faker_module("address", language)
    cities: list[str] = []
    for attribute in ("cities", "states", "regions"):
        cities += _names(getattr(address, attribute, ()))
    generator = faker.Faker(FAKER_LOCALE[language])
    generator.seed_instance(20261202)  # a fixed seed: the same streets in every run
    streets = _names(generator.street_name() for _ in range(400))
    return {
        "first": _names(person.first_names),  # type: ignore[attr-defined]
        "last": _names(person.last_names),  # type: ignore[attr-defined]
        "city": cities,
        "street": streets,
    }


def is_word(word: str, language: str) -> bool:
    """A lowercase word of ``language``'s alphabet (intra-word apostrophe allowed), not an elision stub."""
    letters = f"a-z{EXTRA_LETTERS[language]}"
    if not re.fullmatch(f"[{letters}]+(?:'[{letters}]+)*", word):
        return False
    if word in _ELISION_FRAGMENTS.get(language, ()):
        return False
    return len(word) > 1 or word in _SINGLE_LETTER_WORDS[language]


@lru_cache(maxsize=16)
def frequent_words(language: str, count: int = 20_000) -> tuple[str, ...]:
    """``wordfreq``'s ``count`` most frequent words of ``language`` that are plain words, in rank order."""
    check_language(language)
    import wordfreq

    return tuple(word for word in wordfreq.top_n_list(language, count) if is_word(word, language))


def word_slot(language: str, count: int = 5000) -> list[str]:
    """The ``{word}`` slot: frequent words of at least 4 letters (function words make poor examples)."""
    return [word for word in frequent_words(language, count) if len(word) >= 4 and "'" not in word]
