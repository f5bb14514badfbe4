"""A finite weighted grammar of sentences, and the everyday-English one of ``data/everyday_grammar.txt``."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from training.number_words import number_slots
from training.sentence_lists import GRAMMAR_FILE


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
    return Grammar.parse(GRAMMAR_FILE.read_text(encoding="utf-8"), extra_slots=number_slots())
