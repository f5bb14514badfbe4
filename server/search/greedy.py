"""Batched greedy transducer search, as a beam of width 1.

At each encoder frame, emit the argmax symbol while it is not blank, at most
``max_symbols_per_frame`` times. State and result are those of beam search with K = 1
(``BeamState``, ``BeamTrace``), so everything downstream has one path; the score stays 0
(greedy search compares nothing).

Phrase boosting: a stream with a context graph chooses the argmax of its log-probabilities
plus each token's context gain (the bonus of a token that extends a match; blank 0). Nothing
is taken back from a choice when a match fails: with one hypothesis there is nothing to
compare it with, and a penalty on every other token would only favour blank. The state still
follows the graph, so a failed match starts over.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from server.model.transducer import StreamingTransducer
from server.search.context_graph import ContextGraph
from server.search.hypotheses import BeamState, BeamTrace


def greedy_search_frames(
    model: StreamingTransducer,
    encoder_out: Tensor,
    num_frames: Tensor,
    state: BeamState,
    frame_offset: Tensor,
    allowed: Tensor | None = None,
    contexts: Sequence[ContextGraph | None] | None = None,
) -> tuple[BeamState, BeamTrace]:
    """Advance every stream over its frames of ``encoder_out``.

    encoder_out (B, T, D), num_frames (B,) valid frames per stream, ``state`` with K = 1
    (``decoder_context`` (B, 1, context_size) holds the last tokens), frame_offset (B,)
    absolute index of frame 0 (for timestamps), allowed (B, V) bool the tokens each stream may
    emit (None: all), contexts (B,) each stream's phrase-boosting graph or None. Returns the
    new state and the trace.
    """
    batch, num_steps, _ = encoder_out.shape
    blank = model.tokenizer.blank_id
    context = state.decoder_context[:, 0].clone()  # (B, context_size)
    encoder_proj = model.joiner.encoder_proj(encoder_out)  # (B, T, J)
    decoder_proj = model.joiner.decoder_proj(model.decoder(context)[:, 0])  # (B, J)
    emitted: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
    boosted = [(row, graph) for row, graph in enumerate(contexts or ()) if graph is not None]
    graph_states = state.context_state[:, 0].clone() if boosted else state.context_state[:, 0]
    offsets = frame_offset.tolist()
    for t in range(num_steps):
        active = t < num_frames
        if not bool(active.any()):
            break
        for _ in range(model.config.max_symbols_per_frame):
            logits = model.joiner.output(torch.tanh(encoder_proj[:, t] + decoder_proj))
            if allowed is not None:
                logits = logits.masked_fill(~allowed, float("-inf"))
            following: list[Tensor] = []
            if boosted:
                best, following = _boosted_argmax(logits, graph_states, boosted, blank)
            else:
                best = logits.argmax(dim=-1)
            emit = active & (best != blank)
            if not bool(emit.any()):
                break
            for (row, _), next_states in zip(boosted, following, strict=True):
                if bool(emit[row]):
                    graph_states[row] = next_states[best[row]]
            rows = emit.nonzero(as_tuple=True)[0]
            context[rows] = torch.cat([context[rows, 1:], best[rows, None]], dim=1)
            decoder_proj[rows] = model.joiner.decoder_proj(model.decoder(context[rows])[:, 0])
            for row, token in zip(rows.tolist(), best[rows].tolist(), strict=True):
                emitted[row].append((token, offsets[row] + t))
            active = emit
    new_state = BeamState(
        decoder_context=context.unsqueeze(1),
        lm_context=state.lm_context,
        scores=state.scores,
        hashes=state.hashes,
        context_state=graph_states.unsqueeze(1) if boosted else state.context_state,
        other_lm_context=state.other_lm_context,
        multi_talker=state.multi_talker,
    )
    return new_state, _trace_of(emitted, encoder_out.device)


def _boosted_argmax(
    logits: Tensor, graph_states: Tensor, boosted: list[tuple[int, ContextGraph]], blank: int
) -> tuple[Tensor, list[Tensor]]:
    """The symbol of each stream (B,): the argmax of the logits (B, V), or for a boosted stream of its
    log-probabilities plus the tokens' positive context gains; and each boosted stream's next states (V,)."""
    choice = logits.float()
    if choice is logits:
        choice = choice.clone()
    following = []
    for row, graph in boosted:
        delta, next_states = graph.step(graph_states[row : row + 1])
        gain = delta[0].clamp_min(0.0)
        gain[blank] = 0.0
        choice[row] = choice[row].log_softmax(dim=-1) + gain
        following.append(next_states[0])
    return choice.argmax(dim=-1), following


def _trace_of(emitted: list[list[tuple[int, int]]], device: torch.device) -> BeamTrace:
    """Per-stream (token, frame) lists -> the K = 1 trace (B, 1, L)."""
    batch, longest = len(emitted), max((len(e) for e in emitted), default=0)
    padded = [pairs + [(0, 0)] * (longest - len(pairs)) for pairs in emitted]
    pairs = torch.tensor(padded, dtype=torch.int64).view(batch, 1, longest, 2)  # one host-to-tensor copy
    tokens, frames = pairs[..., 0], pairs[..., 1]
    lengths = torch.tensor([[len(e)] for e in emitted], dtype=torch.int64)
    origin = torch.zeros(batch, 1, dtype=torch.int64)
    return BeamTrace(
        origin=origin.to(device), tokens=tokens.to(device), frames=frames.to(device), lengths=lengths.to(device)
    )
