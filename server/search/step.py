"""One streaming step of B streams: the model's encoder chunk, then the search over its frames.

``StreamState`` is everything a stream carries from one chunk to the next (the encoder's
caches and the search's hypotheses), with the stream dimension first, so the engine's slot
pool gathers and scatters it by index. ``decode_chunk`` is the whole per-chunk work of the
server's worker, and of every other caller that decodes chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from server.model.state import EncoderState, RowState
from server.model.transducer import StreamingTransducer
from server.search.beam import beam_search_frames
from server.search.context_graph import ContextGraph
from server.search.greedy import greedy_search_frames
from server.search.hypotheses import BeamState, BeamTrace, init_beam_state, reset_beams_
from server.search.options import Search


@dataclass
class StreamState(RowState):
    """The streaming state of B streams: ``encoder`` caches and the search's ``beams`` (K per stream)."""

    encoder: EncoderState
    beams: BeamState


@dataclass
class ChunkOutput:
    """What one chunk step produced for B streams.

    num_frames: (B,) encoder frames produced per stream.
    trace: what the chunk added to each stream's K hypotheses (their new scores are
        ``state.beams.scores``; ``hypotheses.beam_updates`` turns both into Python lists).
    state: the streams' new state.
    ctc_log_probs: (B, T, V) the CTC head's log-probabilities of the chunk's frames (row b
        valid up to ``num_frames[b]``) when the search rescores finals with them; else None.
    """

    num_frames: Tensor
    trace: BeamTrace
    state: StreamState
    ctc_log_probs: Tensor | None = None


def init_stream_state(
    model: StreamingTransducer,
    search: Search,
    batch: int,
    language_weights: Tensor | None = None,
    multi_talker: Tensor | None = None,
) -> StreamState:
    """Fresh state for ``batch`` streams; language_weights (B, num_languages) or None = all languages;
    multi_talker (B,) bool the streams that want virtual channels (t-SOT) or None = none."""
    encoder = model.init_encoder_state(batch, language_weights)
    device = encoder.chunks_done.device
    beams = init_beam_state(
        batch,
        search.beam,
        model.config.decoder.context_size,
        search.lm_context_size,
        model.tokenizer.blank_id,
        device,
        multi_talker,
    )
    return StreamState(encoder=encoder, beams=beams)


def allowed_tokens(model: StreamingTransducer, language_weights: Tensor | None, multi_talker: Tensor) -> Tensor | None:
    """(B, V) bool the tokens each stream may emit, or None for all: its languages' tokens (CMM;
    language_weights (B, num_languages) or None), and ``<cc>`` only where multi_talker (B,) bool, so
    a t-SOT model's one-talker streams search exactly as a one-talker model's would."""
    allowed = None if language_weights is None else model.allowed_tokens(language_weights)
    cc = model.tokenizer.cc_id
    if cc is None:
        return allowed
    if allowed is None:
        allowed = torch.ones(multi_talker.shape[0], model.config.tokenizer.vocab_size, dtype=torch.bool)
        allowed = allowed.to(multi_talker.device)
    allowed[:, cc] = multi_talker
    return allowed


def reset_utterance_(model: StreamingTransducer, state: StreamState, rows: Tensor) -> None:
    """Start a new utterance for ``rows`` (N,), in place: the encoder runs on, the hypotheses restart."""
    reset_beams_(state.beams, rows, model.tokenizer.blank_id)


def search_frames(
    model: StreamingTransducer,
    search: Search,
    encoder_out: Tensor,
    num_frames: Tensor,
    beams: BeamState,
    frame_offset: Tensor,
    allowed: Tensor | None = None,
    contexts: Sequence[ContextGraph | None] | None = None,
) -> tuple[BeamState, BeamTrace]:
    """Advance the hypotheses over encoder frames (B, T, D), num_frames (B,) valid; beam 1 is greedy search.

    allowed (B, V) bool: the tokens each stream may emit (its languages'), or None for all.
    contexts (B,): each stream's phrase-boosting graph or None (None: no stream boosts).
    """
    if search.beam == 1:
        return greedy_search_frames(model, encoder_out, num_frames, beams, frame_offset, allowed, contexts)
    return beam_search_frames(model, encoder_out, num_frames, beams, search, frame_offset, allowed, contexts)


def decode_chunk(
    model: StreamingTransducer,
    search: Search,
    features: Tensor,
    num_feature_frames: Tensor,
    state: StreamState,
    contexts: Sequence[ContextGraph | None] | None = None,
) -> ChunkOutput:
    """One chunk of B streams: features (B, feature_window, F), num_feature_frames (B,) real frames.

    ``state`` must have been made for ``search`` (``init_stream_state``); contexts (B,) each
    stream's phrase-boosting graph or None.
    """
    frame_offset = model.chunk_frame_offset(state.encoder)
    encoder_out, num_frames, encoder = model.encode_chunk(features, num_feature_frames, state.encoder)
    allowed = allowed_tokens(model, state.encoder.language_weights, state.beams.multi_talker)
    beams, trace = search_frames(model, search, encoder_out, num_frames, state.beams, frame_offset, allowed, contexts)
    ctc_log_probs = model.ctc_log_probs(encoder_out) if search.uses_ctc else None
    return ChunkOutput(num_frames, trace, StreamState(encoder, beams), ctc_log_probs)
