"""ARPA n-gram files (what SRILM, KenLM's ``lmplz`` and most toolkits write) in our LM format.

An ARPA file is a backoff model: per order, ``log10 p(w | h)`` for seen n-grams and a backoff
weight ``log10 bo(h)`` per context, with p(w | h) = bo(h) p(w | h') when (h, w) is unseen.
``TokenNgramLM`` stores the interpolated form: per seen context a weight for the order below and,
per seen entry, the part of its probability the order below does not give. So the backoff
weight becomes the lower-order weight, and each entry keeps ``p(w | h) - bo(h) p(w | h')``
(the order below queried through the tables built so far); both forms then give the same
probability to every (context, word).

Words map to our ids by ``word_id``: ``<s>`` is the context padding, ``</s>`` and ``<unk>`` map
as the caller says (a word LM has both; a token LM over BPE pieces has neither, and n-grams with
them are dropped). A word the caller cannot map drops its n-grams too.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from server.search.ngram_lm import TokenNgramLM, _encode
from server.search.rescoring import _FIRST_WORD_ID, MAX_WORDS, SENTENCE_END, SENTENCE_START, UNKNOWN_WORD, WordLM

SPECIAL_WORDS = ("<s>", "</s>", "<unk>")


@dataclass
class ArpaModel:
    """The n-grams of an ARPA file: per order n, words tuple -> (log10 p, log10 backoff)."""

    order: int
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=list)

    @property
    def vocabulary(self) -> list[str]:
        return [gram[0] for gram in self.ngrams[0]]


def read_arpa(path: Path) -> ArpaModel:
    """Parse an ARPA file (plain or .gz); ``ValueError`` naming the line on a malformed one."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:  # type: ignore[operator]
        counts: list[int] = []
        ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = []
        section = 0
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line == "\\data\\":
                continue
            if line == "\\end\\":
                break
            if line.startswith("ngram ") and section == 0:
                counts.append(int(line.split("=")[1]))
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                ngrams.append({})
                continue
            parts = line.split()
            if section == 0 or len(parts) not in (section + 1, section + 2):
                raise ValueError(f"{path}:{number}: not an ARPA {section}-gram line: {line[:80]!r}")
            backoff = float(parts[section + 1]) if len(parts) == section + 2 else 0.0
            ngrams[section - 1][tuple(parts[1 : section + 1])] = (float(parts[0]), backoff)
    if not ngrams or len(ngrams) != len(counts):
        raise ValueError(f"{path}: not an ARPA file (no \\data\\ header with its n-gram sections)")
    return ArpaModel(order=len(ngrams), ngrams=ngrams)


def to_ngram_lm(arpa: ArpaModel, word_id: Callable[[str], int | None], vocab_size: int) -> TokenNgramLM:
    """The ARPA model over our ids (see the module docstring); ``word_id("<s>")`` is the padding."""
    unigram = np.zeros(vocab_size)
    for (word,), (log_p, _) in arpa.ngrams[0].items():
        index = word_id(word)
        if index is not None and word != "<s>":  # <s> is context only (-99 in ARPA)
            unigram[index] += 10.0**log_p
    if unigram.sum() <= 0:
        raise ValueError("no unigram of the ARPA file maps to this vocabulary")
    unigram /= unigram.sum()
    tables: dict[str, list[torch.Tensor]] = {k: [] for k in ("keys", "weights", "offsets", "tokens", "probs")}
    lm = TokenNgramLM(1, vocab_size, torch.from_numpy(unigram).float(), [], [], [], [], [])
    for n in range(2, arpa.order + 1):
        grams, arpa_probs = [], []
        for words, (log_p, _) in arpa.ngrams[n - 1].items():
            ids = [word_id(word) for word in words]
            if all(index is not None for index in ids) and "<s>" not in words[1:]:
                grams.append(ids)
                arpa_probs.append(10.0**log_p)
        if not grams:
            break
        gram_array = np.asarray(grams, np.int64)
        context_keys, inverse = np.unique(_encode(gram_array[:, :-1], vocab_size), return_inverse=True)
        backoff = _context_backoffs(arpa, n, word_id, vocab_size, context_keys)
        lower = lm.log_prob_of(torch.from_numpy(gram_array[:, 1:-1]), torch.from_numpy(gram_array[:, -1])).exp()
        probs = np.maximum(np.asarray(arpa_probs) - backoff[inverse] * lower.double().numpy(), 0.0)
        # Each context's distribution sums to 1 again where n-grams were dropped (</s>, <unk> and
        # unknown pieces of a token LM): the order below sums to 1, so the total is this.
        totals = np.bincount(inverse, weights=probs, minlength=len(context_keys)) + backoff
        probs, backoff = probs / totals[inverse], backoff / totals
        order_within = np.lexsort((gram_array[:, -1], inverse))
        offsets = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(context_keys)))])
        tables["keys"].append(torch.from_numpy(context_keys))
        tables["weights"].append(torch.from_numpy(backoff).float())
        tables["offsets"].append(torch.from_numpy(offsets.astype(np.int64)))
        tables["tokens"].append(torch.from_numpy(gram_array[order_within, -1].copy()))
        tables["probs"].append(torch.from_numpy(probs[order_within]).float())
        lm = TokenNgramLM(
            n,
            vocab_size,
            lm.unigram,
            tables["keys"],
            tables["weights"],
            tables["offsets"],
            tables["tokens"],
            tables["probs"],
        )
    return lm


def _context_backoffs(
    arpa: ArpaModel, n: int, word_id: Callable[[str], int | None], vocab_size: int, context_keys: np.ndarray
) -> np.ndarray:
    """bo(h) (not log) of each seen order-n context h, from the (n-1)-gram lines (1 where absent)."""
    by_key = {}
    for words, (_, log_backoff) in arpa.ngrams[n - 2].items():
        ids = [word_id(word) for word in words]
        if all(index is not None for index in ids):
            by_key[int(_encode(np.asarray([ids], np.int64), vocab_size)[0])] = 10.0**log_backoff
    return np.asarray([by_key.get(int(key), 1.0) for key in context_keys])


def word_lm_from_arpa(path: Path) -> WordLM:
    """A word ARPA file as the word LM that rescores finals (its words are the vocabulary)."""
    arpa = read_arpa(path)
    words = [word for word in arpa.vocabulary if word not in SPECIAL_WORDS]
    if len(words) > MAX_WORDS:
        raise ValueError(f"{path}: {len(words)} words; a word LM holds at most {MAX_WORDS} (prune the ARPA first)")
    ids = {word: index for index, word in enumerate(words, _FIRST_WORD_ID)}
    ids |= {"<s>": SENTENCE_START, "</s>": SENTENCE_END, "<unk>": UNKNOWN_WORD}
    return WordLM(to_ngram_lm(arpa, ids.get, len(words) + _FIRST_WORD_ID), {w: ids[w] for w in words})


def token_lm_from_arpa(path: Path, piece_id: Callable[[str], int | None], vocab_size: int, pad_id: int) -> TokenNgramLM:
    """An ARPA file over the model's BPE pieces as the token LM fused into the search: ``<s>`` is
    the padding (the blank), n-grams with ``</s>``, ``<unk>`` or an unknown piece are dropped."""

    def token(word: str) -> int | None:
        if word == "<s>":
            return pad_id
        return None if word in SPECIAL_WORDS else piece_id(word)

    return to_ngram_lm(read_arpa(path), token, vocab_size)


def arpa_log10_prob(arpa: ArpaModel, history: tuple[str, ...], word: str) -> float:
    """log10 p(word | history) by the ARPA backoff rule (a reference for tests)."""
    for start in range(len(history) + 1):
        context = history[start:]
        entry = arpa.ngrams[len(context)].get((*context, word)) if len(context) < arpa.order else None
        if entry is not None:
            backoff = sum(arpa.ngrams[len(history[s:]) - 1].get(history[s:], (0.0, 0.0))[1] for s in range(start))
            return entry[0] + backoff
    return -math.inf
