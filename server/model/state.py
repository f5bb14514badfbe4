"""Per-stream streaming state as plain data: every tensor has the stream (batch) dimension first.

The serving engine keeps one state of ``capacity`` rows (the slot pool), gathers the rows
of a batch with ``select`` and writes them back with ``assign_``. ``RowState`` gives any
dataclass of such tensors (or of nested ``RowState``) these two operations.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from torch import Tensor

RowStateT = TypeVar("RowStateT", bound="RowState")


class RowState:
    """Mixin for dataclasses whose fields are (B, ...) tensors or nested ``RowState``."""

    def select(self: RowStateT, rows: Tensor) -> RowStateT:
        """Gather rows (N,) int64 -> a new state of N streams."""
        values: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value = getattr(self, f.name)
            values[f.name] = value.select(rows) if isinstance(value, RowState) else value.index_select(0, rows)
        return type(self)(**values)

    def narrow(self: RowStateT, start: int, count: int) -> RowStateT:
        """Rows ``start .. start + count - 1`` as views (no copy): ``select`` of a contiguous range."""
        values: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            values[f.name] = (
                value.narrow(start, count) if isinstance(value, RowState) else value.narrow(0, start, count)
            )
        return type(self)(**values)

    def copy_(self, other: RowState) -> None:
        """Write ``other`` (of the same rows) into this state, in place; a tensor that already is this
        one (a field a step passed through unchanged, e.g. views from ``narrow``) is skipped."""
        for f in fields(self):  # type: ignore[arg-type]
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, RowState) or mine.data_ptr() != theirs.data_ptr() or mine.stride() != theirs.stride():
                mine.copy_(theirs)

    def assign_(self, rows: Tensor, other: RowState) -> None:
        """Write ``other``'s streams into ``rows`` (N,) of this state, in place."""
        for f in fields(self):  # type: ignore[arg-type]
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, RowState):
                mine.assign_(rows, theirs)
            else:
                mine.index_copy_(0, rows, theirs)


@dataclass
class EncoderState(RowState):
    """Encoder caches of B streams.

    attn_keys, attn_values: (B, L, H, M, d_k) left-context keys/values of every layer
        (M = left_chunks * chunk_size encoder frames).
    conv_cache: (B, L, D, kernel - 1) last GLU outputs of every layer's depthwise conv.
    chunks_done: (B,) int64 full chunks the encoder has consumed (positions, cache validity).
    language_weights: (B, num_languages) float, the request's language mask normalised to
        sum 1 (CMM); all languages for a model with one language.
    """

    attn_keys: Tensor
    attn_values: Tensor
    conv_cache: Tensor
    chunks_done: Tensor
    language_weights: Tensor
