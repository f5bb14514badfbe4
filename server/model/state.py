"""Per-stream streaming state as plain data: every tensor has the stream (batch) dimension first.

The serving engine keeps one ``StreamState`` of ``max_streams`` rows (the slot pool) and
gathers the rows of a batch with ``select`` and writes them back with ``assign_``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor


@dataclass
class StreamState:
    """Encoder caches and decoder context of B streams.

    attn_keys, attn_values: (B, L, H, M, d_k) left-context keys/values of every layer
        (M = left_chunks * chunk_size encoder frames).
    conv_cache: (B, L, D, kernel - 1) last GLU outputs of every layer's depthwise conv.
    chunks_done: (B,) int64 full chunks the encoder has consumed (positions, cache validity).
    decoder_context: (B, context_size) int64 last emitted tokens (blank-padded at start).
    language_weights: (B, num_languages) float, the request's language mask normalised to
        sum 1 (CMM); all languages for a model with one language.
    beam_decoder_context, beam_lm_context, beam_scores, beam_hashes: the beam search state
        (``server.search.beam.BeamState``) with K hypotheses per stream: (B, K, context_size),
        (B, K, lm_context_size), (B, K), (B, K). K is 1 and unused under greedy search.
    """

    attn_keys: Tensor
    attn_values: Tensor
    conv_cache: Tensor
    chunks_done: Tensor
    decoder_context: Tensor
    language_weights: Tensor
    beam_decoder_context: Tensor
    beam_lm_context: Tensor
    beam_scores: Tensor
    beam_hashes: Tensor

    def select(self, rows: Tensor) -> StreamState:
        """Gather rows (N,) int64 -> a new state of N streams."""
        return StreamState(**{f.name: getattr(self, f.name).index_select(0, rows) for f in fields(self)})

    def assign_(self, rows: Tensor, other: StreamState) -> None:
        """Write ``other``'s streams into ``rows`` (N,) of this state, in place."""
        for f in fields(self):
            getattr(self, f.name).index_copy_(0, rows, getattr(other, f.name))
