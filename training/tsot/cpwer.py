"""Concatenated minimum-permutation WER (cpWER) of multi-talker transcripts.

Each talker's reference (all of its words in the recording, concatenated) is matched to one
output channel, under the permutation of channels with the fewest word errors; a reference with
no channel left counts as deletions, a channel with no reference as insertions (CHiME-6's cpWER,
Watanabe et al. 2020). Word errors are jiwer's (Levenshtein alignment of words). Texts are
compared as given: the caller normalizes them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions turning ``hypothesis`` into ``reference``."""
    reference_words, hypothesis_words = reference.split(), hypothesis.split()
    # jiwer refuses empty references: an empty side is all insertions or all deletions.
    if not reference_words or not hypothesis_words:
        return len(reference_words) + len(hypothesis_words)
    output = jiwer.process_words(" ".join(reference_words), " ".join(hypothesis_words))
    return int(output.substitutions + output.deletions + output.insertions)


@dataclass(frozen=True)
class Permuted:
    """One recording's cpWER terms: errors under the best permutation and reference words."""

    errors: int
    reference_words: int
    # channel_of[k]: the hypothesis channel matched to reference k (None: no channel, all deleted).
    channel_of: tuple[int | None, ...]


def best_permutation(references: Sequence[str], hypotheses: Sequence[str]) -> Permuted:
    """The matching of references (talkers) to hypotheses (channels) with the fewest word errors.

    Both lists are padded with empty texts to the same length, so every permutation pairs each
    talker with a channel or with nothing, and each channel with a talker or with nothing.
    Ties keep the first permutation in lexicographic order (the identity first).
    """
    size = max(len(references), len(hypotheses))
    refs = list(references) + [""] * (size - len(references))
    hyps = list(hypotheses) + [""] * (size - len(hypotheses))
    costs = [[word_errors(r, h) for h in hyps] for r in refs]  # (size, size)
    best: tuple[int, tuple[int, ...]] | None = None
    for permutation in itertools.permutations(range(size)):
        errors = sum(costs[k][permutation[k]] for k in range(size))
        if best is None or errors < best[0]:
            best = (errors, permutation)
    if best is None:  # no references and no hypotheses
        return Permuted(0, 0, ())
    errors, permutation = best
    channel_of = tuple(permutation[k] if permutation[k] < len(hypotheses) else None for k in range(len(references)))
    return Permuted(errors, sum(len(r.split()) for r in references), channel_of)


def cpwer(recordings: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    """Corpus cpWER: total errors under each recording's best permutation over total reference words.

    recordings: (references per talker, hypotheses per channel) per recording.
    """
    results = [best_permutation(refs, hyps) for refs, hyps in recordings]
    return sum(r.errors for r in results) / max(1, sum(r.reference_words for r in results))


def speaker_references(manifest: Path) -> list[list[str]]:
    """Per manifest row, its talkers' references: the ``speakers`` texts by start, else ``[text]``."""
    references = []
    for line in Path(manifest).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        speakers = sorted(entry.get("speakers") or [], key=lambda speaker: float(speaker.get("start", 0.0)))
        references.append([str(s["text"]) for s in speakers] if speakers else [str(entry["text"])])
    return references
