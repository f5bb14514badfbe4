"""Ctrl-C during a transcription: the first stops the audio, the second quits.

On the first SIGINT the audio iterator ends, so gRPC half-closes the stream; the server then
finalises the utterance in progress and its final result still prints. A second SIGINT raises
``KeyboardInterrupt`` as usual (the CLI exits with 130 without waiting for the server).
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, TracebackType
from typing import Any

# How often the audio iterator looks at the stop flag while its source has nothing new.
_POLL_SECONDS = 0.05
_END = object()


class StopOnInterrupt:
    """Within ``with``: the first SIGINT sets ``stop`` (and calls ``on_first``), the next raises
    ``KeyboardInterrupt``. Outside the main thread (where Python delivers signals) it only
    provides the flag."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.stop = threading.Event()
        self._on_first = on_first
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        if self._on_first is not None:
            self._on_first()


def until_stopped(chunks: Iterable[bytes], stop: threading.Event) -> Iterator[bytes]:
    """``chunks`` until they end or ``stop`` is set, whichever comes first.

    A thread draws the chunks (reading stdin, pacing), so that a source blocked in a read or a
    sleep cannot delay the half-close: this iterator ends within ``_POLL_SECONDS`` of ``stop``.
    The thread is a daemon: one still blocked in a read of stdin does not keep the CLI alive.
    An error of the source is raised here.
    """
    closed = threading.Event()  # this iterator is done (ended, stopped, or dropped by gRPC)

    def gone() -> bool:
        return stop.is_set() or closed.is_set()

    handoff: queue.Queue[object] = queue.Queue(maxsize=4)
    thread = threading.Thread(target=_produce, args=(chunks, handoff, gone), name="asr-audio", daemon=True)
    thread.start()
    try:
        while not stop.is_set():
            try:
                item = handoff.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
        # Stopped: what the source had already delivered (read, or "played" when paced) still goes.
        yield from _delivered(handoff)
    finally:
        closed.set()


def _delivered(handoff: queue.Queue[object]) -> Iterator[bytes]:
    """The chunks waiting in ``handoff``, without waiting for more."""
    while True:
        try:
            item = handoff.get_nowait()
        except queue.Empty:
            return
        if not isinstance(item, bytes):  # the end, or an error: nothing after it
            return
        yield item


def _produce(chunks: Iterable[bytes], handoff: queue.Queue[object], gone: Callable[[], bool]) -> None:
    try:
        for chunk in chunks:
            if not _put(handoff, chunk, gone):
                return
    except Exception as error:  # handed to the consumer, which raises it
        _put(handoff, error, gone)
        return
    _put(handoff, _END, gone)


def _put(handoff: queue.Queue[object], item: object, gone: Callable[[], bool]) -> bool:
    """Put ``item`` unless the consumer is ``gone`` first; True when put."""
    while not gone():
        try:
            handoff.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
