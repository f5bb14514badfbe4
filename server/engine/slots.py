"""Slot pool: one row of model state per stream, in one preallocated ``StreamState``.

Gathering a batch is then ``state.select(slots)`` (an index-select) and writing it back
``state.assign_(slots, new)`` (an index-copy); streams join and leave without reallocating.
Slot numbers are handed out on the event loop; the state tensors are touched only by the
model worker thread.
"""

from __future__ import annotations

import heapq


class SlotExhaustedError(RuntimeError):
    """No free slot: more concurrent streams than the pool was sized for."""


class SlotAllocator:
    """Free list of slot numbers ``0 .. capacity-1``; lowest free slot first (compact batches)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = list(range(capacity))
        heapq.heapify(self._free)

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise SlotExhaustedError(f"all {self.capacity} stream slots are in use")
        return heapq.heappop(self._free)

    def release(self, slot: int) -> None:
        heapq.heappush(self._free, slot)
