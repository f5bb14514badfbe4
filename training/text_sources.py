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
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Protocol

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


# ---------------------------------------------------------------------------- word lists


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


# ---------------------------------------------------------------------------- numbers

# fmt: off
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_ONES = (
    "", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth",
)
_ORDINAL_TENS = (
    "", "", "twentieth", "thirtieth", "fortieth", "fiftieth", "sixtieth", "seventieth",
    "eightieth", "ninetieth",
)
# fmt: on


def number_to_words(n: int, use_and: bool = False) -> str:
    """Cardinal ``n`` (0 <= n < 1,000,000) in words: 312 -> "three hundred twelve".

    ``use_and`` gives the British/colloquial "three hundred and twelve".
    """
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = f"{_ONES[hundreds]} hundred"
        return head if rest == 0 else f"{head} {'and ' if use_and else ''}{number_to_words(rest)}"
    thousands, rest = divmod(n, 1000)
    head = f"{number_to_words(thousands, use_and)} thousand"
    if rest == 0:
        return head
    joiner = " and " if use_and and rest < 100 else " "
    return head + joiner + number_to_words(rest, use_and)


def ordinal_to_words(n: int) -> str:
    """Ordinal ``n`` (1 <= n < 100) in words: 21 -> "twenty first"."""
    if not 1 <= n < 100:
        raise ValueError(f"ordinal out of range: {n}")
    if n < 20:
        return _ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return _ORDINAL_TENS[tens] if ones == 0 else f"{_TENS[tens]} {_ORDINAL_ONES[ones]}"


def year_to_words(year: int) -> list[str]:
    """The ways people say a year: 1998 -> "nineteen ninety eight"; 2005 -> "two thousand five" ..."""
    century, rest = divmod(year, 100)
    if 2000 <= year < 2010:
        forms = [number_to_words(year), number_to_words(year, use_and=True)]
    elif rest == 0:
        forms = [f"{number_to_words(century)} hundred"]
    elif rest < 10:
        forms = [f"{number_to_words(century)} oh {_ONES[rest]}"]
    else:
        forms = [f"{number_to_words(century)} {number_to_words(rest)}"]
    if 2010 <= year < 2100:
        forms.append(number_to_words(year))  # "two thousand fifteen" besides "twenty fifteen"
    return forms


def _number_slots() -> dict[str, list[str]]:
    """Finite number vocabularies the grammar refers to as slots (``{num_2_20}`` ...)."""

    def cardinals(low: int, high: int) -> list[str]:
        return [number_to_words(n) for n in range(low, high + 1)]

    hundreds = sorted({number_to_words(n, use_and=flag) for n in range(100, 1000) for flag in (False, True)})
    return {
        "digit": [*_ONES[:10], "oh"],
        "digit_nz": _ONES[1:10],
        "num_1_12": cardinals(1, 12),
        "num_2_12": cardinals(2, 12),
        "num_1_20": cardinals(1, 20),
        "num_2_20": cardinals(2, 20),
        "num_1_59": cardinals(1, 59),
        "num_2_59": cardinals(2, 59),
        "num_10_59": cardinals(10, 59),
        "num_5_25": ["five", "ten", "twenty", "twenty five"],
        "num_1_99": cardinals(1, 99),
        "num_2_99": cardinals(2, 99),
        "num_100_999": hundreds,
        "ordinal": [ordinal_to_words(n) for n in range(1, 32)],
        "year": [form for year in range(1950, 2031) for form in year_to_words(year)],
    }


# ---------------------------------------------------------------------------- grammar


@dataclass(frozen=True)
class _Slot:
    """Weighted alternatives of one grammar slot; a token is a word or ``{slot}``."""

    alternatives: tuple[tuple[str, ...], ...]
    cum_weights: tuple[float, ...]


_WEIGHTED = re.compile(r"^(\d+(?:\.\d+)?)\*\s+(.*)$")
_VERB_FORMS = ("base", "s", "past", "ing", "pp")


def _tokens(text: str) -> tuple[str, ...]:
    return () if text.strip() == "<empty>" else tuple(text.split())


class Grammar:
    """A finite, weighted context-free grammar over words (no recursion through a slot).

    It generates sentences with a ``random.Random`` and can also decide whether it can
    generate a given sentence, which is how the tests prove that held-out sentences are out
    of its reach.
    """

    def __init__(self, slots: Mapping[str, _Slot]):
        self._slots = dict(slots)
        for name, slot in self._slots.items():
            for alternative in slot.alternatives:
                for token in alternative:
                    if token.startswith("{") and token[1:-1] not in self._slots:
                        raise ValueError(f"slot {name!r} refers to unknown slot {token}")

    @classmethod
    def parse(cls, text: str, extra_slots: Mapping[str, Sequence[str]] | None = None) -> Grammar:
        """Read the ``== name`` / ``== verbs name`` format of ``data/everyday_grammar.txt``."""
        raw: dict[str, list[tuple[float, tuple[str, ...]]]] = {}
        for name, values in (extra_slots or {}).items():
            raw[name] = [(1.0, _tokens(value)) for value in values]
        current: str | None = None
        verb_table: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("=="):
                header = line[2:].split()
                verb_table = header[1] if header[0] == "verbs" and len(header) == 2 else None
                current = None if verb_table else header[0]
                if current is not None:
                    raw.setdefault(current, [])
                continue
            if verb_table is not None:
                parts = [part.strip() for part in line.split("|")]
                if len(parts) != 6:
                    raise ValueError(f"grammar line {number}: a verb needs 5 forms and a complement")
                for form, word in zip(_VERB_FORMS, parts[:5], strict=True):
                    raw.setdefault(f"{verb_table}.{form}", []).append((1.0, _tokens(f"{word} {parts[5]}")))
                continue
            if current is None:
                raise ValueError(f"grammar line {number}: alternative outside a slot")
            match = _WEIGHTED.match(line)
            weight, body = (float(match.group(1)), match.group(2)) if match else (1.0, line)
            raw[current].append((weight, _tokens(body)))
        slots = {}
        for name, weighted in raw.items():
            if not weighted:
                raise ValueError(f"slot {name!r} has no alternatives")
            slots[name] = _Slot(
                alternatives=tuple(alternative for _, alternative in weighted),
                cum_weights=tuple(itertools.accumulate(weight for weight, _ in weighted)),
            )
        return cls(slots)

    @property
    def slot_names(self) -> frozenset[str]:
        return frozenset(self._slots)

    def vocabulary(self) -> frozenset[str]:
        """Every word any alternative can produce."""
        return frozenset(
            token
            for slot in self._slots.values()
            for alternative in slot.alternatives
            for token in alternative
            if not token.startswith("{")
        )

    def generate(self, rng: random.Random, symbol: str = "sentence") -> str:
        """One random sentence derived from ``symbol``."""
        words: list[str] = []
        self._expand(symbol, rng, words)
        return " ".join(words)

    def _expand(self, symbol: str, rng: random.Random, out: list[str]) -> None:
        slot = self._slots[symbol]
        (alternative,) = rng.choices(slot.alternatives, cum_weights=slot.cum_weights)
        for token in alternative:
            if token.startswith("{"):
                self._expand(token[1:-1], rng, out)
            else:
                out.append(token)

    def can_generate(self, sentence: str, symbol: str = "sentence") -> bool:
        """Whether some derivation of ``symbol`` yields exactly ``sentence`` (word by word)."""
        words = tuple(sentence.split())
        memo: dict[tuple[str, int], frozenset[int]] = {}

        def slot_ends(name: str, start: int) -> frozenset[int]:
            key = (name, start)
            if key not in memo:
                memo[key] = frozenset()  # a placeholder that stops (absent) left recursion
                ends: set[int] = set()
                for alternative in self._slots[name].alternatives:
                    ends |= sequence_ends(alternative, start)
                memo[key] = frozenset(ends)
            return memo[key]

        def sequence_ends(tokens: tuple[str, ...], start: int) -> set[int]:
            positions = {start}
            for token in tokens:
                if token.startswith("{"):
                    positions = {end for p in positions for end in slot_ends(token[1:-1], p)}
                else:
                    positions = {p + 1 for p in positions if p < len(words) and words[p] == token}
                if not positions:
                    break
            return positions

        return len(words) in slot_ends(symbol, 0)


@lru_cache(maxsize=1)
def everyday_grammar() -> Grammar:
    """The conversational-English grammar of ``data/everyday_grammar.txt`` with number slots."""
    return Grammar.parse(GRAMMAR_FILE.read_text(encoding="utf-8"), extra_slots=_number_slots())


# ---------------------------------------------------------------------------- sources


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


# ---------------------------------------------------------------------------- mixture


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
