"""Admission control: the concurrent-stream limit and draining."""

from __future__ import annotations

import asyncio

import grpc

from server.api.errors import RequestError


class Admission:
    """Counts recognition calls in progress; refuses new ones past the limit or while draining."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """Admit one call or raise UNAVAILABLE (draining) / RESOURCE_EXHAUSTED (full)."""
        if self.draining:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another instance")
        if self.active >= self.max_streams:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server is at its limit of {self.max_streams} concurrent streams; retry later",
            )
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in progress; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
