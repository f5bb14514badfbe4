"""Batched modified beam search for the transducer, with optional n-gram shallow fusion.

"Modified" beam search (Kang et al. 2022, as in icefall/sherpa) emits at most one symbol per
encoder frame, which makes every frame one batched step over B streams x K hypotheses:

    score(hyp + token) = score(hyp) + log P_joint(token | frame, hyp) + lm_weight * log P_lm(token | hyp)
    score(hyp + blank) = score(hyp) + log P_joint(blank | frame, hyp)

Hypotheses that reach the same token sequence by different paths are merged (log-add of
their scores), and the best K survive. All search state is the ``BeamState`` tensors, passed
in and returned, so a stream can be decoded chunk by chunk exactly as in one piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TypeVar

import torch
from torch import Tensor

from server.model.transducer import StreamingTransducer
from server.search.context_graph import ContextGraph
from server.search.hypotheses import BeamState, BeamTrace
from server.search.memo import PredictionMemo, context_index, fusion_memo, prediction_memo
from server.search.options import Search

_HASH_MULTIPLIER = 1_000_003
_HASH_MASK = (1 << 61) - 1
_RowsT = TypeVar("_RowsT", BeamState, BeamTrace)


def empty_trace(batch: int, beam: int, device: torch.device | str) -> BeamTrace:
    """A trace of a call that added nothing: every hypothesis extends itself."""
    return BeamTrace(
        origin=torch.arange(beam, device=device).expand(batch, beam).clone(),
        tokens=torch.zeros(batch, beam, 0, dtype=torch.int64, device=device),
        frames=torch.zeros(batch, beam, 0, dtype=torch.int64, device=device),
        lengths=torch.zeros(batch, beam, dtype=torch.int64, device=device),
    )


def _gather_beams(x: Tensor, parent: Tensor) -> Tensor:
    """x (B, K, ...) and parent (B, K) -> x[b, parent[b, k], ...]."""
    index = parent.view(*parent.shape, *([1] * (x.dim() - 2))).expand(*parent.shape, *x.shape[2:])
    return x.gather(1, index)


def _shift_in(context: Tensor, token: Tensor, emit: Tensor) -> Tensor:
    """context (B, K, C): drop the oldest token and append ``token`` (B, K) where ``emit``."""
    if context.shape[2] == 0:
        return context
    shifted = torch.cat([context[:, :, 1:], token.unsqueeze(2)], dim=2)
    return torch.where(emit.unsqueeze(2), shifted, context)


def _merge_duplicates(scores: Tensor, hashes: Tensor) -> Tensor:
    """scores, hashes (B, N), scores sorted descending -> merged scores, -inf on dropped duplicates.

    The first (best) of each group of equal hashes keeps the log-sum of the group's scores.
    """
    same = (hashes.unsqueeze(2) == hashes.unsqueeze(1)) & torch.isfinite(scores).unsqueeze(1)
    earlier = torch.ones(hashes.shape[1], hashes.shape[1], dtype=torch.bool, device=scores.device).tril(-1)
    is_duplicate = (same & earlier).any(dim=2)
    group = torch.where(same, scores.unsqueeze(1), torch.full_like(same, float("-inf"), dtype=scores.dtype))
    merged = torch.logsumexp(group, dim=2)
    return torch.where(is_duplicate | ~torch.isfinite(scores), torch.full_like(scores, float("-inf")), merged)


def beam_search_frames(
    model: StreamingTransducer,
    encoder_out: Tensor,
    num_frames: Tensor,
    state: BeamState,
    search: Search,
    frame_offset: Tensor,
    allowed: Tensor | None = None,
    contexts: Sequence[ContextGraph | None] | None = None,
) -> tuple[BeamState, BeamTrace]:
    """Advance every stream's beam over its frames of ``encoder_out``.

    model: a ``StreamingTransducer`` (its ``decoder``, ``joiner`` and blank id are used).
    encoder_out (B, T, D); num_frames (B,) valid frames per stream; ``state`` made for
    ``search`` (``init_beam_state``); frame_offset (B,) absolute index of frame 0 (for token
    timestamps); allowed (B, V) bool the tokens each stream may emit (None: all), a mask on
    the joiner's logits; contexts (B,) each stream's phrase-boosting graph or None (None:
    no stream boosts; a stream without one computes exactly what it computes alone). Returns
    the new state and the trace.
    """
    batch, num_steps, _ = encoder_out.shape
    beam = state.scores.shape[1]
    blank = model.tokenizer.blank_id
    device = encoder_out.device
    cc = model.tokenizer.cc_id
    if state.lm_context.shape[2] != search.lm_context_size:
        raise ValueError(
            f"beam state has LM context {state.lm_context.shape[2]}, the search needs "
            f"{search.lm_context_size}: make the state with the same Search"
        )
    boosted = [(row, graph) for row, graph in enumerate(contexts or ()) if graph is not None]
    trace = empty_trace(batch, beam, device)
    encoder_proj = model.joiner.encoder_proj(encoder_out)  # (B, T, J)
    # Each hypothesis' prediction-network output and fusion terms depend on its last tokens only:
    # read from memos (server.search.memo), so a frame gathers them rather than computing them.
    predictions, fusion = prediction_memo(model), fusion_memo(search, model)

    def rows_of(state: BeamState) -> tuple[_DistinctRows, Tensor]:
        distinct = _DistinctRows.of(state.decoder_context, predictions)
        token_terms = fusion.lookup(state.lm_context.view(batch * beam, -1)).view(batch, beam, -1)  # (B, K, V)
        return distinct, token_terms

    distinct, token_terms = rows_of(state)
    for t in range(num_steps):
        active = t < num_frames  # (B,)
        if not bool(active.any()):
            break
        # The joiner runs once per distinct (stream, decoder context): a quarter of the B x K rows
        # with en-small's 2-token context, as most of a beam ends in the same tokens.
        hidden = torch.tanh(encoder_proj[distinct.stream, t] + distinct.decoder_proj)  # (U, J)
        logits = model.joiner.output(hidden)  # (U, V)
        if allowed is not None:
            logits = logits.masked_fill(~allowed[distinct.stream], float("-inf"))
        # Fusion terms apply to tokens only: a blank (or <cc>) neither advances the LM nor earns the bonus.
        log_probs = logits.float().log_softmax(dim=-1)[distinct.inverse].view(batch, beam, -1) + token_terms
        vocab = log_probs.shape[-1]
        following = _boost_(log_probs, state.context_state, boosted, blank, cc) if boosted else []
        candidates = (state.scores.unsqueeze(2) + log_probs).view(batch, beam * vocab)
        width = min(2 * beam, beam * vocab)
        top_scores, top_index = candidates.topk(width, dim=1)  # sorted descending
        parent = top_index // vocab
        token = top_index % vocab
        emit = token != blank
        parent_hash = state.hashes.gather(1, parent)
        hashes = torch.where(emit, (parent_hash * _HASH_MULTIPLIER + token + 1) & _HASH_MASK, parent_hash)
        merged = _merge_duplicates(top_scores, hashes)
        new_scores, keep = merged.topk(beam, dim=1)
        parent, token, emit, hashes = (x.gather(1, keep) for x in (parent, token, emit, hashes))
        # t-SOT: a <cc> swaps the LM histories of the two virtual channels and is itself no word.
        switch = emit & (token == cc) if cc is not None else torch.zeros_like(emit)
        word = emit & ~switch
        lm_context = _gather_beams(state.lm_context, parent)
        other_lm_context = _gather_beams(state.other_lm_context, parent)
        swap = switch.unsqueeze(2)
        new_state = BeamState(
            decoder_context=_shift_in(_gather_beams(state.decoder_context, parent), token, emit),
            lm_context=torch.where(swap, other_lm_context, _shift_in(lm_context, token, word)),
            scores=new_scores,
            hashes=hashes,
            context_state=_advance_contexts(state.context_state, parent, token, word, boosted, following)
            if boosted
            else state.context_state,
            other_lm_context=torch.where(swap, lm_context, other_lm_context),
            multi_talker=state.multi_talker,
        )
        new_trace = _extend_trace(trace, parent, token, emit, frame_offset + t)
        state = _where_active(active, new_state, state)
        trace = _where_active(active, new_trace, _pad_history(trace, new_trace.tokens.shape[2]))
        distinct, token_terms = rows_of(state)
    return state, trace


@dataclass(frozen=True)
class _DistinctRows:
    """The distinct (stream, decoder context) pairs of a beam state, U of the B x K hypotheses.

    stream (U,) each pair's stream; decoder_proj (U, J) its prediction-network row through the
    decoder projection; inverse (B * K,) the pair of each hypothesis (row-major)."""

    stream: Tensor
    decoder_proj: Tensor
    inverse: Tensor

    @classmethod
    def of(cls, decoder_context: Tensor, predictions: PredictionMemo) -> _DistinctRows:
        """decoder_context (B, K, C) -> the distinct pairs, their rows read from the memo."""
        batch, beam, width = decoder_context.shape
        flat = decoder_context.reshape(batch * beam, width)
        stream = torch.arange(batch, device=flat.device).repeat_interleave(beam)
        key = stream * predictions.vocab_size**width + context_index(flat, predictions.vocab_size)
        unique, inverse = torch.unique(key, return_inverse=True)
        # One hypothesis of each pair (any: they share the context) gives its stream and context.
        first = torch.empty(unique.shape[0], dtype=torch.int64, device=flat.device)
        first.scatter_(0, inverse, torch.arange(flat.shape[0], device=flat.device))
        return cls(stream=first // beam, decoder_proj=predictions.lookup(flat[first]), inverse=inverse)


def _boost_(
    log_probs: Tensor, context_state: Tensor, boosted: list[tuple[int, ContextGraph]], blank: int, cc: int | None
) -> list[Tensor]:
    """Add each boosted stream's context-graph scores to its rows of log_probs (B, K, V), in place;
    returns each one's next states (K, V). Blank (and a channel change) moves nothing in the graph
    and earns nothing."""
    following = []
    for row, graph in boosted:
        delta, next_states = graph.step(context_state[row])
        delta[:, blank] = 0.0
        if cc is not None:
            delta[:, cc] = 0.0
        log_probs[row] += delta
        following.append(next_states)
    return following


def _advance_contexts(
    context_state: Tensor,
    parent: Tensor,
    token: Tensor,
    emit: Tensor,
    boosted: list[tuple[int, ContextGraph]],
    following: list[Tensor],
) -> Tensor:
    """context_state (B, K) after the step: the parent's state, moved by the token where one was emitted."""
    new = _gather_beams(context_state, parent)
    for (row, _), next_states in zip(boosted, following, strict=True):
        moved = next_states[parent[row], token[row]]
        new[row] = torch.where(emit[row], moved, new[row])
    return new


def _extend_trace(trace: BeamTrace, parent: Tensor, token: Tensor, emit: Tensor, frame: Tensor) -> BeamTrace:
    """Re-point the trace at the surviving parents and append ``token`` where ``emit`` (B, K)."""
    lengths = _gather_beams(trace.lengths, parent)
    tokens = _gather_beams(trace.tokens, parent)
    frames = _gather_beams(trace.frames, parent)
    if bool(emit.any()):
        if int(lengths.max()) >= tokens.shape[2]:  # grow the history buffers
            tokens = _pad_history_tensor(tokens, tokens.shape[2] + max(16, tokens.shape[2]))
            frames = _pad_history_tensor(frames, tokens.shape[2])
        position = lengths.unsqueeze(2)
        absolute = frame.view(-1, 1).expand_as(token)
        tokens = tokens.scatter(2, position, torch.where(emit, token, tokens.gather(2, position)[..., 0])[..., None])
        frames = frames.scatter(2, position, torch.where(emit, absolute, frames.gather(2, position)[..., 0])[..., None])
    return BeamTrace(
        origin=_gather_beams(trace.origin, parent), tokens=tokens, frames=frames, lengths=lengths + emit.long()
    )


def _pad_history_tensor(x: Tensor, length: int) -> Tensor:
    if x.shape[2] >= length:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:2], length - x.shape[2])], dim=2)


def _pad_history(trace: BeamTrace, length: int) -> BeamTrace:
    return BeamTrace(
        origin=trace.origin,
        tokens=_pad_history_tensor(trace.tokens, length),
        frames=_pad_history_tensor(trace.frames, length),
        lengths=trace.lengths,
    )


def _where_active(active: Tensor, new: _RowsT, old: _RowsT) -> _RowsT:
    """Rows where ``active`` (B,) take ``new``; the others keep ``old`` (same dataclass, same shapes)."""
    if bool(active.all()):
        return new
    values = {}
    for f in fields(new):
        a, b = getattr(new, f.name), getattr(old, f.name)
        values[f.name] = torch.where(active.view(-1, *([1] * (a.dim() - 1))), a, b)
    return type(new)(**values)
