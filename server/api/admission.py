"""Admission control: the concurrent-stream limit and draining."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any, Protocol

import grpc

from server.api.errors import RequestError


class SharedCounter(Protocol):
    """What ``SharedStreamCount`` needs of ``multiprocessing.Value("i", 0)``: a value and its lock."""

    value: int

    def get_lock(self) -> AbstractContextManager[Any]: ...


class SharedStreamCount:
    """The streams in progress in all the worker processes of one server (``--workers`` > 1).

    Wraps a ``multiprocessing.Value`` that the parent process created before starting the
    workers; each worker counts its streams in and out under the value's lock (a few
    microseconds, taken on the event loop's thread), so the limit holds for the server as a
    whole whichever worker a connection reaches.
    """

    def __init__(self, counter: SharedCounter) -> None:
        self._counter = counter

    def try_enter(self, limit: int) -> bool:
        """Count one more stream unless ``limit`` are in progress already; False then."""
        with self._counter.get_lock():
            if self._counter.value >= limit:
                return False
            self._counter.value += 1
            return True

    def leave(self) -> None:
        with self._counter.get_lock():
            self._counter.value -= 1

    @property
    def value(self) -> int:
        return self._counter.value


class Admission:
    """Counts recognition calls in progress; refuses new ones past the limit or while draining.

    ``shared``: the count across the server's worker processes, which the limit applies to
    (None: this process is the whole server). ``active`` stays this process's own count: a
    worker drains its own calls.
    """

    def __init__(self, max_streams: int, shared: SharedStreamCount | None = None) -> None:
        self.max_streams = max_streams
        self.shared = shared
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """Admit one call or raise UNAVAILABLE (draining) / RESOURCE_EXHAUSTED (full)."""
        if self.draining:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another instance")
        full = self.active >= self.max_streams if self.shared is None else not self.shared.try_enter(self.max_streams)
        if full:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server is at its limit of {self.max_streams} concurrent streams; retry later",
            )
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.shared is not None:
            self.shared.leave()
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in progress; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
