"""The search state and the step result every search kernel shares: K hypotheses per stream.

Greedy search is a beam of width 1 in these terms: one hypothesis, the same state tensors,
the same trace of what a call added. The tokens themselves are not state: each kernel call
returns a ``BeamTrace`` of what it added, and the caller (a stream's decoder, or one-shot
decoding) keeps the histories with ``relink``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from server.model.state import RowState

Hypothesis = list[tuple[int, int]]  # (token_id, absolute encoder frame) pairs


@dataclass
class BeamState(RowState):
    """The search state of B streams with K hypotheses each (B first, K second).

    decoder_context: (B, K, context_size) int64 last tokens (blank-padded), the prediction network's input.
    lm_context: (B, K, lm_context_size) int64 last tokens for the LM (size 0 without an LM).
    scores: (B, K) float32 fused log-scores; -inf marks an unused beam slot (always 0 under greedy search).
    hashes: (B, K) int64 hash of each hypothesis' whole token sequence (to merge equal ones).
    context_state: (B, K) int64 each hypothesis' state in its stream's context graph (phrase
        boosting, ``context_graph.py``); 0, the root, for a stream without one.
    other_lm_context: (B, K, lm_context_size) int64 the LM history of the other virtual channel
        (t-SOT): a ``<cc>`` swaps it with ``lm_context``, so the LM sees each talker's own words.
    multi_talker: (B,) bool the streams that may emit ``<cc>`` (multi_talker requested); the
        others never do, so their search is the one-talker search.
    """

    decoder_context: Tensor
    lm_context: Tensor
    scores: Tensor
    hashes: Tensor
    context_state: Tensor
    other_lm_context: Tensor
    multi_talker: Tensor


@dataclass
class BeamTrace:
    """What one kernel call did to each stream's K hypotheses.

    origin: (B, K) int64 index of the hypothesis (at the start of the call) each one extends.
    tokens: (B, K, L) int64 tokens it added, valid up to ``lengths`` (B, K).
    frames: (B, K, L) int64 absolute encoder frame of each added token.
    """

    origin: Tensor
    tokens: Tensor
    frames: Tensor
    lengths: Tensor


@dataclass
class BeamUpdate:
    """What one call did to one stream's K hypotheses, as plain Python data.

    Hypothesis k after the call = hypothesis ``origins[k]`` before it + ``added[k]``
    ((token_id, frame) pairs); ``scores`` are the K search scores (-inf for an unused slot).
    """

    origins: list[int]
    added: list[Hypothesis]
    scores: list[float]

    @property
    def best(self) -> int:
        return best_index(self.scores)


def best_index(search_scores: Sequence[float]) -> int:
    """Index of the highest search score (the first of equals)."""
    return max(range(len(search_scores)), key=search_scores.__getitem__)


def init_beam_state(
    batch: int,
    beam: int,
    context_size: int,
    lm_context_size: int,
    blank_id: int,
    device: torch.device | str = "cpu",
    multi_talker: Tensor | None = None,
) -> BeamState:
    """Fresh beams for ``batch`` streams: one live empty hypothesis, K - 1 unused slots.

    multi_talker (B,) bool: the streams that may emit ``<cc>`` (None: none)."""
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0
    lm_context = torch.full((batch, beam, lm_context_size), blank_id, dtype=torch.int64, device=device)
    return BeamState(
        decoder_context=torch.full((batch, beam, context_size), blank_id, dtype=torch.int64, device=device),
        lm_context=lm_context,
        scores=scores,
        hashes=torch.zeros(batch, beam, dtype=torch.int64, device=device),
        context_state=torch.zeros(batch, beam, dtype=torch.int64, device=device),
        other_lm_context=lm_context.clone(),
        multi_talker=torch.zeros(batch, dtype=torch.bool, device=device)
        if multi_talker is None
        else multi_talker.to(device=device, dtype=torch.bool),
    )


def reset_beams_(state: BeamState, rows: Tensor, blank_id: int) -> None:
    """Start a new utterance for ``rows`` (N,) of ``state``, in place: as ``init_beam_state`` makes them."""
    state.decoder_context[rows] = blank_id
    state.lm_context[rows] = blank_id
    state.other_lm_context[rows] = blank_id
    state.scores[rows] = float("-inf")
    state.scores[rows, 0] = 0.0
    state.hashes[rows] = 0
    state.context_state[rows] = 0


def beam_updates(trace: BeamTrace, scores: Tensor) -> list[BeamUpdate]:
    """Per stream, the trace as Python lists; ``scores`` (B, K) are the new state's.

    One device-to-host copy per tensor: this runs on every server step.
    """
    origins, tokens, frames = trace.origin.tolist(), trace.tokens.tolist(), trace.frames.tolist()
    lengths, score_lists = trace.lengths.tolist(), scores.tolist()
    return [
        BeamUpdate(
            origins=origins[b],
            added=[list(zip(tokens[b][k][:n], frames[b][k][:n], strict=True)) for k, n in enumerate(lengths[b])],
            scores=score_lists[b],
        )
        for b in range(len(origins))
    ]


def relink(histories: list[Hypothesis] | None, update: BeamUpdate) -> list[Hypothesis]:
    """One stream's K token histories after a call: origin's history + what was added.

    ``histories`` None means all empty (a fresh or reset stream).
    """
    previous = histories or [[] for _ in update.origins]
    return [previous[origin] + added for origin, added in zip(update.origins, update.added, strict=True)]
