"""When a stream's audio arrived, by position in the audio: dates the end of a final result.

The decoder dates feature windows (for the partial-latency metric) and forgets every arrival
before the window it dates; a final's end lies further back (the endpointer waits for trailing
silence after it), so the session keeps its own, coarser record: one entry per piece of audio
it accepted.
"""

from __future__ import annotations

import bisect


class AudioArrivals:
    """(end of the audio so far in ms, arrival time) per accepted piece of audio, oldest first."""

    def __init__(self, sample_rate: int) -> None:
        self._sample_rate = sample_rate
        self._samples = 0
        self._ends_ms: list[float] = []
        self._times: list[float] = []

    @property
    def received_ms(self) -> float:
        """Audio accepted so far."""
        return self._samples * 1000.0 / self._sample_rate

    def record(self, num_samples: int, arrived_at: float) -> None:
        """``num_samples`` more samples (at ``sample_rate``) arrived at ``arrived_at`` (monotonic s)."""
        if num_samples <= 0:
            return
        self._samples += num_samples
        self._ends_ms.append(self.received_ms)
        self._times.append(arrived_at)

    def arrival_of(self, position_ms: float) -> float | None:
        """When the audio at ``position_ms`` arrived (None before any audio). Past the end (a final
        in the zero padding of the last window): when the last audio arrived."""
        if not self._times:
            return None
        index = bisect.bisect_left(self._ends_ms, position_ms)
        return self._times[min(index, len(self._times) - 1)]

    def forget_before(self, position_ms: float) -> None:
        """Drop the pieces that end before ``position_ms``: no result will end there any more."""
        index = bisect.bisect_left(self._ends_ms, position_ms)
        del self._ends_ms[:index]
        del self._times[:index]
