"""One recognition stream inside the server: its decoder, its result queue and its lifecycle.

The API layer feeds audio in and reads ``Update`` objects out; the scheduler asks for the
next window and hands back the step's slice. The session alone owns the stream's status,
and one method releases its slot. Everything here runs on the event loop; a stream has at
most one window in a model step at a time, because each step continues from the state the
previous one left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from enum import Enum

import numpy as np

from server.engine.arrivals import AudioArrivals
from server.engine.batch import StreamStepOutput, Window
from server.engine.decoder import StreamDecoder, Update

# Feature backlog (seconds of audio not yet through the model) above which the API layer
# stops reading a client's audio, so a client sending faster than real time is slowed by
# gRPC flow control instead of growing server memory.
MAX_BACKLOG_SECONDS = 10.0
# Beyond the endpointer's limits, how much older than the newest audio a final's end may be:
# the backlog (audio not yet through the model) plus a margin for the final windows.
_ARRIVALS_MARGIN_MS = MAX_BACKLOG_SECONDS * 1000 + 5000


class StreamStatus(Enum):
    """Where a stream is; only its session changes it."""

    IDLE = "idle"  # waiting for audio (no window ready)
    QUEUED = "queued"  # in the scheduler's ready queue
    RUNNING = "running"  # a window of it is in a model step
    CLOSING = "closing"  # the call ended during a step: the slot is released when the step returns
    ENDED = "ended"  # final result sent, failed or closed; the slot is released


class StreamSession:
    """A stream between the API layer (audio in, updates out) and the scheduler (windows, step slices)."""

    def __init__(
        self,
        decoder: StreamDecoder,
        slot: int,
        submit: Callable[[StreamSession], None],
        release: Callable[[StreamSession], None],
        observe_final_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.decoder = decoder
        self.slot = slot
        self.status = StreamStatus.IDLE
        self._submit = submit
        self._release = release
        self._updates: asyncio.Queue[Update | BaseException | None] = asyncio.Queue()
        self._capacity = asyncio.Event()
        self._capacity.set()
        # Called with the audio processed (ms) after each of the stream's steps (voice activity timeouts).
        self.step_listener: Callable[[int], None] | None = None
        self._observe_final_latency = observe_final_latency
        self._arrivals = AudioArrivals(decoder.model.config.sample_rate)
        self._arrivals_kept_ms = _arrivals_horizon_ms(decoder)

    # -- API side ------------------------------------------------------------------------------
    def accept_audio(self, samples: np.ndarray) -> None:
        """Feed float32 samples at the model's rate."""
        if self.status is StreamStatus.ENDED or self.decoder.input_done:
            return
        now = time.monotonic()
        self.decoder.accept_audio(samples, now)
        self._arrivals.record(len(samples), now)
        self._arrivals.forget_before(self._arrivals.received_ms - self._arrivals_kept_ms)
        if self.decoder.backlog_seconds > MAX_BACKLOG_SECONDS:
            self._capacity.clear()
        self._advance()

    def finish(self) -> None:
        """End of audio: flush the remainder and finalise the last utterance."""
        if self.status is StreamStatus.ENDED or self.decoder.input_done:
            return
        self.decoder.finish(time.monotonic())
        self._advance()

    async def wait_for_capacity(self) -> None:
        """Wait while the backlog of unprocessed audio is above ``MAX_BACKLOG_SECONDS``."""
        await self._capacity.wait()

    async def updates(self) -> AsyncIterator[Update]:
        """Updates until the stream's final result; re-raises an error passed to ``fail``."""
        while True:
            item = await self._updates.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (raised by ``updates``)."""
        self._updates.put_nowait(error)
        self._end()

    def close(self) -> None:
        """The call is over (finished, failed or cancelled): give back the slot, now or after the step."""
        self._end()

    # -- scheduler side --------------------------------------------------------------------------
    def start_step(self) -> Window | None:
        """The next window, for a session the scheduler took from its queue; None if it ended meanwhile."""
        if self.status is not StreamStatus.QUEUED:
            return None
        self.status = StreamStatus.RUNNING
        window = self.decoder.next_window()
        if self.decoder.backlog_seconds <= MAX_BACKLOG_SECONDS / 2:
            self._capacity.set()
        return window

    def complete_step(self, window: Window, output: StreamStepOutput) -> Update | None:
        """Take this stream's slice of the step; returns the update sent (if any)."""
        if self._step_returned():
            return None
        update = self.decoder.apply(window, output)
        self._send(update)
        if self.step_listener is not None and self.status is not StreamStatus.ENDED:
            self.step_listener(self.decoder.audio_processed_ms)
        return update

    def step_failed(self, error: BaseException) -> None:
        """The step of this stream's window raised: end the stream with ``error``."""
        if not self._step_returned():
            self.fail(error)

    # -- the status, in one place ------------------------------------------------------------------
    def _step_returned(self) -> bool:
        """RUNNING -> IDLE; True when the stream ended during the step (nothing more to do)."""
        if self.status is StreamStatus.CLOSING:
            self._end()
            return True
        self.status = StreamStatus.IDLE
        return False

    def _advance(self) -> None:
        """An IDLE stream with a window queues itself; one with no window left after its input finalises."""
        if self.status is not StreamStatus.IDLE:
            return
        if self.decoder.has_window():
            self.status = StreamStatus.QUEUED
            self._submit(self)
        elif self.decoder.input_done:
            self._send(self.decoder.flush())  # too little audio for another model step

    def _send(self, update: Update | None) -> None:
        if update is not None:
            self._observe_finals(update)
            self._updates.put_nowait(update)
        if self.decoder.done:
            self._updates.put_nowait(None)
            self._end()
        else:
            self._advance()

    def _observe_finals(self, update: Update) -> None:
        """Final latency: from the arrival of the audio at each final's end (the end of speech) to now."""
        finals = [result for result in update.results if result.is_final]
        if not finals:
            return
        now = time.monotonic()
        for result in finals:
            arrived = self._arrivals.arrival_of(result.end_ms)
            if arrived is not None and self._observe_final_latency is not None:
                self._observe_final_latency(max(0.0, now - arrived))
        # The next utterance's results all end after the audio processed so far.
        self._arrivals.forget_before(update.audio_processed_ms)

    def _end(self) -> None:
        """The one path that releases the slot: at once, or (during a step) when the step returns."""
        if self.status is StreamStatus.ENDED:
            return
        if self.status is StreamStatus.RUNNING:
            self.status = StreamStatus.CLOSING
            return
        self.status = StreamStatus.ENDED
        self._capacity.set()
        self._release(self)


def _arrivals_horizon_ms(decoder: StreamDecoder) -> float:
    """How far back a future final's end can lie behind the newest audio: an utterance lasts at
    most the silence timeout (no token yet) plus its maximum length (from its first token), and
    the model may be the backlog behind."""
    endpoint = decoder.options.endpoint
    return endpoint.silence_timeout_ms + endpoint.max_utterance_ms + endpoint.trailing_silence_ms + _ARRIVALS_MARGIN_MS
