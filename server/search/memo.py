"""Memos of the per-hypothesis rows beam search reads every frame, so a frame gathers them instead
of computing them.

Each hypothesis' prediction-network output (through the joiner's decoder projection) is a
function of its last ``context_size`` tokens only (the stateless decoder), and its fusion terms
(the token LM's log-probabilities times the LM weight, plus the token bonus) of its LM context
only. The same few thousand contexts recur across frames, hypotheses and streams, so both are
computed once per context and then read back with one gather:

- ``PredictionMemo``: a (V^C, J) table indexed by the context itself, filled lazily (rows never
  change once written, so readers need no lock). It is rebuilt when the model's weights change
  (training validates with the same model object), move, or switch between inference mode and
  autograd, and it is used only when V^C is small (C = 2, V in the hundreds: 65k rows; untouched
  rows cost no memory).
- ``FusionMemo``: a direct-mapped cache of ``slots`` rows keyed by the LM context (V^3 contexts
  are too many to index directly): a miss computes the row and replaces the slot's previous one.

Neither changes what the search computes: a row read from a memo is the row the model or LM
gives for that context.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from server.model.transducer import StreamingTransducer
from server.search.ngram_lm import TokenNgramLM
from server.search.options import Search

# Beyond this many context rows a direct table stops paying (a larger vocabulary or context):
# the memo then computes every lookup.
MAX_TABLE_ROWS = 1 << 18
FUSION_SLOTS = 1 << 15


def context_index(context: Tensor, vocab_size: int) -> Tensor:
    """context (N, C) token ids, oldest first -> (N,) int64 index in [0, V^C)."""
    index = torch.zeros(context.shape[0], dtype=torch.int64, device=context.device)
    for column in range(context.shape[1]):
        index = index * vocab_size + context[:, column]
    return index


def _weights_version(model: StreamingTransducer) -> tuple[object, ...]:
    """What the memo's rows depend on: the prediction network's and the decoder projection's
    tensors (identity, in-place version, device, dtype)."""
    tensors = [*model.decoder.parameters(), *model.joiner.decoder_proj.parameters()]
    return tuple((id(t), t._version, t.device, t.dtype) for t in tensors), torch.is_inference_mode_enabled()


class PredictionMemo:
    """Lazily filled table of ``joiner.decoder_proj(decoder(context))`` for every token context."""

    def __init__(self, model: StreamingTransducer) -> None:
        self.model = model
        self.vocab_size = model.config.tokenizer.vocab_size
        self.context_size = model.config.decoder.context_size
        self.rows = self.vocab_size**self.context_size
        self.enabled = self.rows <= MAX_TABLE_ROWS
        self._version: tuple[object, ...] | None = None
        self._table: Tensor | None = None  # (V^C, J)
        self._filled: Tensor | None = None  # (V^C,) bool
        self._lock = threading.Lock()

    def compute(self, context: Tensor) -> Tensor:
        """context (N, C) -> (N, J), without the memo."""
        return self.model.joiner.decoder_proj(self.model.decoder(context)[:, 0])

    def lookup(self, context: Tensor) -> Tensor:
        """context (N, C) token ids -> (N, J) the joiner's decoder projection of each context."""
        if not self.enabled or context.shape[0] == 0:
            return self.compute(context)
        table, filled = self._current(context.device)
        index = context_index(context, self.vocab_size)
        missing = ~filled[index]
        if bool(missing.any()):
            new = torch.unique(index[missing])
            table[new] = self.compute(self._context_of(new)).to(table.dtype)
            filled[new] = True  # after the rows: a reader that sees the flag sees the row
        return table[index]

    def _context_of(self, index: Tensor) -> Tensor:
        """(N,) context indices -> (N, C) token ids (``context_index`` inverted)."""
        powers = [self.vocab_size ** (self.context_size - 1 - c) for c in range(self.context_size)]
        return torch.stack([(index // power) % self.vocab_size for power in powers], dim=1)

    def _current(self, device: torch.device) -> tuple[Tensor, Tensor]:
        version = _weights_version(self.model)
        with self._lock:
            if self._table is None or self._filled is None or version != self._version:
                dtype = self.model.joiner.decoder_proj.weight.dtype
                width = self.model.joiner.decoder_proj.out_features
                # torch.empty leaves the pages untouched: only rows filled take memory.
                self._table = torch.empty(self.rows, width, dtype=dtype, device=device)
                self._filled = torch.zeros(self.rows, dtype=torch.bool, device=device)
                self._version = version
            return self._table, self._filled


def prediction_memo(model: StreamingTransducer) -> PredictionMemo:
    """The model's memo (one per model object, made on first use)."""
    memo = model.__dict__.get("_prediction_memo")
    if memo is None:
        memo = PredictionMemo(model)
        model.__dict__["_prediction_memo"] = memo
    return memo


class FusionMemo:
    """Direct-mapped cache of each LM context's fusion terms (V,): ``lm_weight * log P_lm + bonus``
    for tokens, 0 for blank and for a channel change (neither is a word)."""

    def __init__(
        self,
        lm: TokenNgramLM | None,
        lm_weight: float,
        token_bonus: float,
        vocab_size: int,
        no_word_ids: tuple[int, ...],
        slots: int = FUSION_SLOTS,
    ) -> None:
        if slots & (slots - 1):
            raise ValueError(f"slots must be a power of two, got {slots}")
        self.lm = lm
        self.lm_weight = lm_weight
        self.token_bonus = token_bonus
        self.vocab_size = vocab_size
        self.no_word_ids = list(no_word_ids)
        self.slots = slots
        self._keys: Tensor | None = None  # (slots,) int64 context index held, -1: empty
        self._rows: Tensor | None = None  # (slots, V)
        self._mode: tuple[torch.device, bool] | None = None  # where and how the storage was made
        self._lock = threading.Lock()

    def compute(self, context: Tensor) -> Tensor:
        """context (N, C) LM contexts -> (N, V) fusion terms, without the memo."""
        if self.lm is None:
            terms = torch.full((context.shape[0], self.vocab_size), self.token_bonus, device=context.device)
        else:
            terms = self.lm_weight * self.lm.log_probs(context) + self.token_bonus
        terms[:, self.no_word_ids] = 0.0
        return terms

    def lookup(self, context: Tensor) -> Tensor:
        """context (N, C) LM contexts (C may be 0: no LM) -> (N, V) fusion terms."""
        if self.lm is None or context.shape[0] == 0:
            return self.compute(context)
        key = context_index(context, self.vocab_size)
        slot = _slot_of(key, self.slots)
        with self._lock:
            keys, rows = self._storage(context.device)
            out = rows[slot]
            miss = keys[slot] != key
            if bool(miss.any()):
                missed = miss.nonzero(as_tuple=True)[0]
                unique_keys, first = _first_of_each(key[missed])
                computed = self.compute(context[missed[first]])
                out[missed] = computed[torch.searchsorted(unique_keys, key[missed])]
                # Keys that share a slot in this batch: the last written stays, the others miss next time.
                target = _slot_of(unique_keys, self.slots)
                rows[target] = computed
                keys[target] = unique_keys
            return out

    def _storage(self, device: torch.device) -> tuple[Tensor, Tensor]:
        mode = (device, torch.is_inference_mode_enabled())
        if self._keys is None or self._rows is None or mode != self._mode:
            self._keys = torch.full((self.slots,), -1, dtype=torch.int64, device=device)
            self._rows = torch.empty(self.slots, self.vocab_size, device=device)
            self._mode = mode
        return self._keys, self._rows


def _slot_of(key: Tensor, slots: int) -> Tensor:
    """key (N,) int64 >= 0 -> (N,) slot in [0, slots), slots a power of two: a multiplicative hash, so
    every token of the context moves the slot (a plain modulus would ignore the oldest ones)."""
    return ((key * 0x9E3779B1) >> 16) & (slots - 1)


def _first_of_each(values: Tensor) -> tuple[Tensor, Tensor]:
    """values (N,) -> (sorted unique values (U,), index in values of one occurrence of each (U,))."""
    unique, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((unique.shape[0],), values.shape[0], dtype=torch.int64, device=values.device)
    first = first.scatter_reduce(0, inverse, torch.arange(values.shape[0], device=values.device), reduce="amin")
    return unique, first


def fusion_memo(search: Search, model: StreamingTransducer) -> FusionMemo:
    """The fusion memo of ``search`` for ``model``'s tokens (one per search object and vocabulary)."""
    tokenizer = model.tokenizer
    no_word = (tokenizer.blank_id,) if tokenizer.cc_id is None else (tokenizer.blank_id, tokenizer.cc_id)
    key = (model.config.tokenizer.vocab_size, no_word)
    memos = search.__dict__.setdefault("_fusion_memos", {})
    memo = memos.get(key)
    if memo is None:
        options = search.options
        memo = memos[key] = FusionMemo(search.fused_lm, options.lm_weight, options.token_bonus, key[0], no_word)
    return memo
