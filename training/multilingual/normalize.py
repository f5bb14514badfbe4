"""Per-language text normalization for en, de, fr, es, it: what the model's references look like.

A reference is lowercase words separated by single spaces, no punctuation, numbers spelled out:

- letters: a-z plus the accented letters the language writes (German äöüß, French àâæçéèêëîïôœùûüÿ,
  Spanish áéíóúüñ, Italian àèéìíòóù); another language's accent is folded (``Café`` -> ``cafe`` in
  German), so every reference word is spelled with the language's own alphabet;
- apostrophes: kept inside words in English (``don't``), French (``l'eau``, ``aujourd'hui``) and
  Italian (``l'acqua``), where the elided word is one written word; German and Spanish drop them
  (``geht's`` -> ``gehts``); hyphens and other punctuation become word boundaries;
- numbers: digits are spelled with ``num2words`` (``14:30`` as a time, ``3,5`` as a decimal,
  ``%`` and ``€`` as words) by ``spell_numbers``, which also gives the text a TTS engine reads, so
  the engine says the words the reference contains.

English goes through the project's own ``training.text_normalize.normalize_text`` (accents folded,
as the English model always had) after its numbers are spelled.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

from training.text_normalize import normalize_text

LANGUAGES = ("en", "de", "fr", "es", "it")

# The letters each language keeps as they are, beyond a-z.
EXTRA_LETTERS = {
    "en": "",
    "de": "äöüß",
    "fr": "àâæçéèêëîïôœùûüÿ",
    "es": "áéíóúüñ",
    "it": "àèéìíòóù",
}
KEEPS_APOSTROPHE = {"en": True, "de": False, "fr": True, "es": False, "it": True}
_SYMBOL_WORDS = {
    "en": {"%": " percent", "€": " euros", "$": " dollars"},
    "de": {"%": " Prozent", "€": " Euro", "$": " Dollar"},
    "fr": {"%": " pour cent", "€": " euros", "$": " dollars"},
    "es": {"%": " por ciento", "€": " euros", "$": " dólares"},
    "it": {"%": " per cento", "€": " euro", "$": " dollari"},
}
_TIME_JOINER = {"en": "", "de": " Uhr", "fr": " heures", "es": " y", "it": " e"}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})
_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_DECIMAL = re.compile(r"\b(\d+)[.,](\d+)\b")
_INTEGER = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")


def check_language(language: str) -> None:
    """Raise ``ValueError`` for a language outside the five."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; known: {LANGUAGES}")


def clean_words(text: str) -> str:
    """num2words output as plain words: ``one thousand, two hundred and thirty-four`` -> no commas or hyphens."""
    return _SPACES.sub(" ", text.replace("-", " ").replace(",", " ")).strip()


def cardinal(n: int, language: str) -> str:
    """``n`` in words, as num2words writes it in ``language`` (hyphens and commas removed)."""
    return clean_words(num2words(n, lang=language))


def ordinal(n: int, language: str) -> str:
    """The ordinal of ``n`` in words (``twenty first``, ``einundzwanzigste``, ``vingt et unième`` ...)."""
    return clean_words(num2words(n, lang=language, to="ordinal"))


def year(n: int, language: str) -> str:
    """A year as people say it: ``nineteen ninety eight``, ``neunzehnhundertachtundneunzig``, ``mille neuf ...``."""
    return clean_words(num2words(n, lang=language, to="year"))


def _spell_time(match: re.Match[str], language: str) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    head = cardinal(hours, language) + _TIME_JOINER[language]
    if minutes == 0:
        return head + (" o'clock" if language == "en" else "")
    tail = cardinal(minutes, language)
    if language == "en" and minutes < 10:
        tail = f"oh {tail}"
    return f"{head} {tail}"


def _spell_decimal(match: re.Match[str], language: str) -> str:
    point = {"en": "point", "de": "Komma", "fr": "virgule", "es": "coma", "it": "virgola"}[language]
    return f"{cardinal(int(match.group(1)), language)} {point} {cardinal(int(match.group(2)), language)}"


def _pad(match: re.Match[str], words: str) -> str:
    """``words`` for a matched number, spaced off from letters it touched: ``7h`` -> ``sept h``, ``l'11`` joined."""
    text, start, end = match.string, match.start(), match.end()
    left = " " if start > 0 and text[start - 1].isalnum() else ""
    right = " " if end < len(text) and text[end].isalnum() else ""
    return f"{left}{words}{right}"


def spell_numbers(text: str, language: str) -> str:
    """``text`` with times, decimals, integers, ``%``, ``€`` and ``$`` written as words; the rest kept.

    This is the text a TTS engine should read: casing and punctuation (intonation) intact, no
    digits (an engine would expand them its own way, not necessarily the reference's).
    """
    check_language(language)
    text = _TIME.sub(lambda m: _spell_time(m, language), text)
    text = _DECIMAL.sub(lambda m: _spell_decimal(m, language), text)
    text = _INTEGER.sub(lambda m: _pad(m, cardinal(int(m.group(0)), language)), text)
    for symbol, word in _SYMBOL_WORDS[language].items():
        text = text.replace(symbol, word)
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text)).strip()


def _fold(char: str) -> str:
    """An accented letter the language does not write -> its base letter (``ñ`` -> ``n`` in German)."""
    return "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))


def _keep_letters(text: str, language: str) -> str:
    """Letters of the language's alphabet and apostrophes stay; everything else becomes a space."""
    allowed = EXTRA_LETTERS[language]
    out = []
    for char in text:
        if "a" <= char <= "z" or char in allowed or char == "'":
            out.append(char)
        elif char.isalpha():
            folded = _fold(char).lower()
            out.append(folded if folded.isascii() and folded.isalpha() else " ")
        else:
            out.append(" ")
    return "".join(out)


def normalize(text: str, language: str) -> str:
    """The reference form of ``text`` in ``language``: lowercase words, language letters, numbers in words.

    >>> normalize("L'hôtel ouvre à 7h, d'accord ?", "fr")
    "l'hôtel ouvre à sept h d'accord"
    """
    text = spell_numbers(text.translate(_APOSTROPHES), language)
    if language == "en":
        return normalize_text(text)
    # lower(), not casefold(): casefold turns German ß into ss.
    text = _keep_letters(unicodedata.normalize("NFC", text).lower(), language)
    # Only an apostrophe between two letters is part of a word ("l'eau"); quotes are not.
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text) if KEEPS_APOSTROPHE[language] else text.replace("'", "")
    return _SPACES.sub(" ", text).strip()


def is_reference(text: str, language: str, min_words: int = 2, max_words: int = 30) -> bool:
    """Whether ``text`` is already a normalized reference of ``min_words``..``max_words`` words."""
    words = text.split()
    return min_words <= len(words) <= max_words and normalize(text, language) == text
