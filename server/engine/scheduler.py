"""Continuous batching: gather ready windows of many streams into one model step.

Streams submit themselves when they have a window ready. The scheduler waits until
``max_batch_size`` streams are ready, or every open stream is, or the oldest has waited
``max_wait``; takes up to ``max_batch_size`` of them (oldest first), and runs one step on
the worker. Windows that
become ready during a step are picked up by the next one, so under load batches fill
without waiting, and per-stream cost falls as load rises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from server import metrics
from server.engine.batch import BatchOutput, Window
from server.engine.errors import EngineError
from server.engine.session import StreamSession
from server.engine.worker import ModelWorker

log = logging.getLogger(__name__)


class _StepStalledError(Exception):
    """A step passed the watchdog's limit; its streams were ended."""


class BatchScheduler:
    """Feeds one ``ModelWorker`` with batches of ready stream windows."""

    def __init__(
        self,
        worker: ModelWorker,
        max_batch_size: int,
        max_wait_s: float,
        model_name: str,
        open_streams: Callable[[], int],
        step_timeout_s: float = 0.0,
        on_stall: Callable[[bool], None] | None = None,
    ) -> None:
        self.worker = worker
        self._open_streams = open_streams
        self.step_timeout_s = step_timeout_s  # the watchdog's limit (0: none)
        self._on_stall = on_stall
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._ready: deque[tuple[StreamSession, float]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._frame_seconds = worker.model.frame_shift_ms / 1000.0
        self._batch_size = metrics.BATCH_SIZE.labels(model=model_name)
        self._queue_wait = metrics.QUEUE_WAIT.labels(model=model_name)
        self._step_seconds = metrics.STEP_SECONDS.labels(model=model_name)
        self._audio_seconds = metrics.AUDIO_SECONDS.labels(model=model_name)
        self._partial_latency = metrics.PARTIAL_LATENCY.labels(model=model_name)
        self.steps = 0  # model steps run (for tests and logs)
        self.max_batch_seen = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="asr-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, session: StreamSession) -> None:
        """Called by a session that has a window ready and none queued or in flight."""
        self._ready.append((session, time.monotonic()))
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._gather()
                if batch:
                    await self._step(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failing step must not take the scheduler (and every stream) down;
                # the streams of that batch get the error (see ``_step``).
                log.exception("scheduler iteration failed")

    async def _gather(self) -> list[tuple[StreamSession, Window]]:
        """Wait for work, then up to ``max_wait`` for a full batch; pop it."""
        while not self._ready:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._ready[0][1] + self.max_wait_s
        # Waiting is pointless once every open stream is ready (no one else can join this
        # batch); this keeps a lone stream, or a backlog of audio, from paying max_wait per step.
        while len(self._ready) < min(self.max_batch_size, self._open_streams()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        batch: list[tuple[StreamSession, Window]] = []
        while self._ready and len(batch) < self.max_batch_size:
            session, _ = self._ready.popleft()
            window = session.start_step()
            if window is not None:  # None: the stream ended while queued
                batch.append((session, window))
        return batch

    async def _step(self, batch: list[tuple[StreamSession, Window]]) -> None:
        started = time.monotonic()
        for _, window in batch:
            self._queue_wait.observe(max(0.0, started - window.ready_at))
        step = asyncio.ensure_future(self.worker.run([(session.slot, window) for session, window in batch]))
        try:
            result: BatchOutput = await self._watched(step, batch)
        except asyncio.CancelledError:
            # The engine is stopping mid-step: end these streams so their slots are released.
            for session, _ in batch:
                session.step_failed(EngineError("the recognition engine stopped"))
            raise
        except _StepStalledError:
            return
        except Exception as error:
            log.exception("model step failed for a batch of %d streams", len(batch))
            for session, _ in batch:
                session.step_failed(
                    EngineError(
                        f"the model step of this stream failed ({type(error).__name__}); the server serves on, "
                        "open a new stream to retry"
                    )
                )
            return
        self._observe(len(batch), result)
        for (session, window), output in zip(batch, result.streams, strict=True):
            try:
                update = session.complete_step(window, output)
            except Exception as error:
                # A bug in one stream's result handling ends that stream, not the batch.
                log.exception("handling a step output failed")
                session.fail(EngineError(f"handling this stream's result failed ({type(error).__name__})"))
                continue
            if update is not None and update.results:
                self._partial_latency.observe(max(0.0, time.monotonic() - window.ready_at))

    async def _watched(
        self, step: asyncio.Future[BatchOutput], batch: list[tuple[StreamSession, Window]]
    ) -> BatchOutput:
        """The step's output; a step past ``step_timeout_s`` ends its streams, marks the engine
        stalled until the worker returns (nothing else can run on it meanwhile), then raises
        ``_StepStalledError``."""
        if not self.step_timeout_s:
            return await step
        try:
            return await asyncio.wait_for(asyncio.shield(step), self.step_timeout_s)
        except asyncio.TimeoutError:
            pass
        log.error(
            "model step of %d stream(s) has not returned after %.1f s: ending them, engine stalled",
            len(batch),
            self.step_timeout_s,
        )
        for session, _ in batch:
            session.step_failed(
                EngineError(
                    f"the model step of this stream did not return within {self.step_timeout_s:g} s; "
                    "open a new stream to retry"
                )
            )
        if self._on_stall is not None:
            self._on_stall(True)
        try:
            with contextlib.suppress(Exception):  # its outcome no longer matters
                await step
        finally:
            log.warning("the stalled model step returned after all: engine serving again")
            if self._on_stall is not None:
                self._on_stall(False)
        raise _StepStalledError

    def _observe(self, batch_size: int, result: BatchOutput) -> None:
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, batch_size)
        audio_seconds = sum(stream.num_frames for stream in result.streams) * self._frame_seconds
        self._batch_size.observe(batch_size)
        self._step_seconds.observe(result.seconds)
        self._audio_seconds.inc(audio_seconds)
