"""Token n-gram language model for shallow fusion in beam search.

Over the transducer's own token ids (BPE pieces), so it plugs into the search with no word
lexicon. Interpolated Kneser-Ney, stored per order like an ARPA file but as tensors: each seen
context (up to ``order - 1`` tokens) has its seen next tokens with their discounted
probabilities (CSR layout) and the weight of the next-lower order. A query for N contexts
builds N full distributions at once: the dense unigram row, then per longer order the context's
interpolation weight times it plus its entries; an unseen context keeps the lower row (backoff).

Why not KenLM: its builder (``lmplz``) is a C++ binary that pip does not ship, its Python
module scores words one state at a time, and we need all V next-token scores of B×K
hypotheses per frame, which the vectorised query gives directly.

Context padding: the blank id (0) never appears inside a token sequence, so it doubles as
the sentence-start symbol, exactly as the prediction network's context is blank-padded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

LM_FILE = "lm.safetensors"
LM_FORMAT_VERSION = 1


class TokenNgramLM:
    """Query side of the n-gram LM. Tables per context length k = 1 .. order - 1:

    context_keys[k-1]: (C_k,) sorted int64 keys of the seen contexts of length k.
    lower_weights[k-1]: (C_k,) float32 probability mass given to the order below.
    offsets[k-1]: (C_k + 1,) int64 where each context's entries start in ``tokens``/``probs``.
    tokens[k-1]: (E_k,) int64 next tokens; probs[k-1]: (E_k,) float32 their discounted probabilities.
    unigram: (V,) float32 probabilities of the empty context.
    """

    def __init__(
        self,
        order: int,
        vocab_size: int,
        unigram: Tensor,
        context_keys: list[Tensor],
        lower_weights: list[Tensor],
        offsets: list[Tensor],
        tokens: list[Tensor],
        probs: list[Tensor],
        info: dict | None = None,
    ) -> None:
        tables = (context_keys, lower_weights, offsets, tokens, probs)
        if order < 1 or any(len(t) != order - 1 for t in tables):
            raise ValueError(f"an order-{order} LM needs {order - 1} tables of each kind")
        if unigram.shape != (vocab_size,):
            raise ValueError(f"unigram table has shape {tuple(unigram.shape)}, expected ({vocab_size},)")
        for k in range(order - 1):
            if offsets[k].shape[0] != context_keys[k].shape[0] + 1 or tokens[k].shape != probs[k].shape:
                raise ValueError(f"LM tables of context length {k + 1} are inconsistent")
        self.order = order
        self.vocab_size = vocab_size
        self.unigram = unigram.float()
        self.context_keys = [t.long() for t in context_keys]
        self.lower_weights = [t.float() for t in lower_weights]
        self.offsets = [t.long() for t in offsets]
        self.tokens = [t.long() for t in tokens]
        self.probs = [t.float() for t in probs]
        self.info = dict(info or {})  # provenance (text, sentences, ...) kept in the file's header
        self._entry_key_cache: dict[int, Tensor] = {}  # for log_prob_of, built on first use

    @property
    def context_size(self) -> int:
        return self.order - 1

    @property
    def num_entries(self) -> int:
        return sum(t.numel() for t in self.tokens)

    def to(self, device: str | torch.device) -> TokenNgramLM:
        move = lambda ts: [t.to(device) for t in ts]  # noqa: E731
        return TokenNgramLM(
            self.order,
            self.vocab_size,
            self.unigram.to(device),
            move(self.context_keys),
            move(self.lower_weights),
            move(self.offsets),
            move(self.tokens),
            move(self.probs),
            self.info,
        )

    def log_probs(self, contexts: Tensor) -> Tensor:
        """contexts (N, order - 1) int64, oldest token first, blank-padded -> (N, V) log-probs."""
        self._check_contexts(contexts)
        num = contexts.shape[0]
        rows = self.unigram.expand(num, -1).clone()
        for k in range(1, self.order):
            lookup = self._find_contexts(contexts, k)
            if lookup is None:
                continue
            position, is_known = lookup
            found = is_known.nonzero(as_tuple=True)[0]
            if found.numel() == 0:
                break  # no longer context can be seen if this one was not
            context = position[found]
            rows[found] *= self.lower_weights[k - 1][context, None]
            starts = self.offsets[k - 1][context]
            counts = self.offsets[k - 1][context + 1] - starts
            row_of_entry = torch.repeat_interleave(found, counts)
            first_entry = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)
            entry = first_entry + torch.arange(row_of_entry.numel(), device=contexts.device)
            rows.index_put_((row_of_entry, self.tokens[k - 1][entry]), self.probs[k - 1][entry], accumulate=True)
        return rows.clamp_min(1e-12).log()

    def log_prob_of(self, contexts: Tensor, targets: Tensor) -> Tensor:
        """contexts (N, order - 1) int64 (as in ``log_probs``), targets (N,) int64 -> (N,) log-probs.

        The same values as ``log_probs(contexts)[arange(N), targets]`` without building the
        N x V rows: for a word LM (V in the tens of thousands) that is the difference between
        a millisecond and a tenth of a second per query.
        """
        self._check_contexts(contexts)
        prob = self.unigram[targets]
        for k in range(1, self.order):
            lookup = self._find_contexts(contexts, k)
            if lookup is None:
                continue
            position, found = lookup
            # Entries are grouped by context and sorted by token inside a group, so
            # (context position, token) is one sorted key over all entries of this order.
            entry_keys = self._entry_keys(k)
            discounted = torch.zeros_like(prob)
            if entry_keys.numel():
                wanted = position * self.vocab_size + targets
                entry = torch.searchsorted(entry_keys, wanted).clamp(max=entry_keys.numel() - 1)
                discounted = torch.where(found & (entry_keys[entry] == wanted), self.probs[k - 1][entry], 0.0)
            prob = torch.where(found, prob * self.lower_weights[k - 1][position] + discounted, prob)
        return prob.clamp_min(1e-12).log()

    def _check_contexts(self, contexts: Tensor) -> None:
        if contexts.shape[1] != self.context_size:
            raise ValueError(f"LM contexts must have {self.context_size} tokens, got {contexts.shape[1]}")

    def _find_contexts(self, contexts: Tensor, k: int) -> tuple[Tensor, Tensor] | None:
        """Each row's last k tokens in the order-(k+1) context table: (position (N,), found (N,) bool).

        None when the table is empty (no n-gram of that order was kept).
        """
        table = self.context_keys[k - 1]
        if table.numel() == 0:
            return None
        keys = _context_keys(contexts[:, self.context_size - k :], self.vocab_size)
        position = torch.searchsorted(table, keys).clamp(max=table.numel() - 1)
        return position, table[position] == keys

    def _entry_keys(self, k: int) -> Tensor:
        """(E_k,) int64 context position * V + token of every entry of context length k (cached)."""
        if k not in self._entry_key_cache:
            counts = self.offsets[k - 1][1:] - self.offsets[k - 1][:-1]
            context_of_entry = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
            self._entry_key_cache[k] = context_of_entry * self.vocab_size + self.tokens[k - 1]
        return self._entry_key_cache[k]

    # -- files -----------------------------------------------------------------------------
    def save(self, path: Path | str, metadata: dict | None = None) -> None:
        """One safetensors file; probabilities fp16, token ids int16 (V < 32768)."""
        tensors = {"unigram": self.unigram.contiguous()}
        for k in range(self.order - 1):
            tensors[f"context_keys_{k + 1}"] = self.context_keys[k].contiguous()
            tensors[f"lower_weights_{k + 1}"] = self.lower_weights[k].contiguous()
            tensors[f"offsets_{k + 1}"] = self.offsets[k].to(torch.int32).contiguous()
            tensors[f"tokens_{k + 1}"] = self.tokens[k].to(torch.int16).contiguous()
            tensors[f"probs_{k + 1}"] = self.probs[k].to(torch.float16).contiguous()
        header = {
            "format_version": str(LM_FORMAT_VERSION),
            "order": str(self.order),
            "vocab_size": str(self.vocab_size),
            "info": json.dumps(metadata or self.info),
        }
        save_file(tensors, str(path), metadata=header)

    @classmethod
    def load(cls, path: Path | str) -> TokenNgramLM:
        """Raises ``FileNotFoundError`` or ``ValueError`` (naming the file) on a bad file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no language model file here")
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            if header.get("format_version") != str(LM_FORMAT_VERSION):
                raise ValueError(f"{path}: unknown LM format version {header.get('format_version')!r}")
            order, vocab = int(header["order"]), int(header["vocab_size"])
            names = ("context_keys", "lower_weights", "offsets", "tokens", "probs")
            try:
                tables = {n: [handle.get_tensor(f"{n}_{k}") for k in range(1, order)] for n in names}
                unigram = handle.get_tensor("unigram")
            except Exception as error:  # safetensors raises its own error types for missing tensors
                raise ValueError(f"{path}: incomplete LM file ({error})") from error
        try:
            return cls(order, vocab, unigram, **tables, info=json.loads(header.get("info", "{}")))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


# ---------------------------------------------------------------------------- estimation


def _ngrams(sequences: list[np.ndarray], n: int, pad: int) -> np.ndarray:
    """All n-grams of the sequences, each left-padded with n - 1 ``pad``: (M, n) int64.

    Only n-grams that end in a real token: the pad is context, never a prediction.
    """
    grams = [
        np.lib.stride_tricks.sliding_window_view(np.concatenate([np.full(n - 1, pad, np.int64), s]), n)
        for s in sequences
        if len(s)
    ]
    if not grams:
        return np.zeros((0, n), np.int64)
    stacked = np.concatenate(grams)
    return stacked[stacked[:, -1] != pad]


def _encode(columns: np.ndarray, vocab_size: int) -> np.ndarray:
    """(M, k) token ids -> (M,) int64 keys; the same numbering as ``_context_keys``."""
    keys = np.zeros(columns.shape[0], np.int64)
    for i in range(columns.shape[1]):
        keys = keys * (vocab_size + 1) + columns[:, i] + 1
    return keys


def build_ngram_lm(
    sequences: Iterable[list[int]],
    vocab_size: int,
    order: int = 4,
    discount: float = 0.75,
    min_count: int = 1,
    pad_id: int = 0,
) -> TokenNgramLM:
    """Interpolated Kneser-Ney estimate from token-id sequences (one per sentence, unpadded).

    The highest order counts n-grams; lower orders count continuations (how many distinct
    tokens precede an n-gram). Each order keeps ``max(count - discount, 0) / total`` per seen
    token and gives the rest of the mass to the order below; highest-order entries seen fewer
    than ``min_count`` times are dropped (their mass goes to the order below too).
    """
    if not 1 <= order <= 6:  # keys are base-(V+1) numbers in int64
        raise ValueError(f"order must be 1..6, got {order}")
    arrays = [np.asarray(s, np.int64) for s in sequences]
    context_keys_k: list[Tensor] = []
    lower_weights_k: list[Tensor] = []
    offsets_k: list[Tensor] = []
    tokens_k: list[Tensor] = []
    probs_k: list[Tensor] = []
    unigram = np.full(vocab_size, 1.0 / vocab_size)
    for n in range(1, order + 1):
        if n == order:
            grams, counts = np.unique(_ngrams(arrays, n, pad_id), axis=0, return_counts=True)
        else:  # continuation counts: distinct left neighbours among the (n+1)-grams
            grams, counts = np.unique(
                np.unique(_ngrams(arrays, n + 1, pad_id), axis=0)[:, 1:], axis=0, return_counts=True
            )
        counts = counts.astype(np.float64)
        keys = _encode(grams[:, :-1], vocab_size)
        context_keys, inverse = np.unique(keys, return_inverse=True)
        totals = np.bincount(inverse, weights=counts)
        probs = np.maximum(counts - discount, 0.0) / totals[inverse]
        keep = counts >= (min_count if n == order else 1)
        kept_mass = np.bincount(inverse[keep], weights=probs[keep], minlength=len(context_keys))
        lower_weight = 1.0 - kept_mass
        if n == 1:
            unigram = lower_weight[0] * unigram
            np.add.at(unigram, grams[keep, -1], probs[keep])
            unigram[pad_id] = 0.0  # the blank/pad is never predicted
            unigram /= unigram.sum()
            continue
        order_within = np.lexsort((grams[:, -1], inverse))  # entries grouped by context
        sel = order_within[keep[order_within]]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(inverse[sel], minlength=len(context_keys)))])
        context_keys_k.append(torch.from_numpy(context_keys))
        lower_weights_k.append(torch.from_numpy(lower_weight).float())
        offsets_k.append(torch.from_numpy(offsets.astype(np.int64)))
        tokens_k.append(torch.from_numpy(grams[sel, -1].copy()))
        probs_k.append(torch.from_numpy(probs[sel]).float())
    unigram_probs = torch.from_numpy(unigram).float()
    return TokenNgramLM(order, vocab_size, unigram_probs, context_keys_k, lower_weights_k, offsets_k, tokens_k, probs_k)


def _context_keys(contexts: Tensor, vocab_size: int) -> Tensor:
    """contexts (N, k) int64 token ids -> (N,) int64 keys, unique per (k, tokens)."""
    keys = torch.zeros(contexts.shape[0], dtype=torch.int64, device=contexts.device)
    for i in range(contexts.shape[1]):
        keys = keys * (vocab_size + 1) + contexts[:, i] + 1
    return keys
