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

import numpy as np

from server import metrics
from server.engine.session import StreamSession, Window
from server.engine.worker import ModelWorker, StepRequest, StepResult

log = logging.getLogger(__name__)


class BatchScheduler:
    """Feeds one ``ModelWorker`` with batches of ready stream windows."""

    def __init__(
        self,
        worker: ModelWorker,
        max_batch_size: int,
        max_wait_s: float,
        model_name: str,
        open_streams: Callable[[], int],
    ) -> None:
        self.worker = worker
        self._open_streams = open_streams
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
        self._rtf = metrics.RtfTracker(model_name)
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
        session.queued = True
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

    async def _gather(self) -> list[StreamSession]:
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
        batch = []
        while self._ready and len(batch) < self.max_batch_size:
            session, _ = self._ready.popleft()
            session.queued = False
            if session.closed:
                continue  # cancelled while queued; its slot is already free
            batch.append(session)
        return batch

    async def _step(self, sessions: list[StreamSession]) -> None:
        windows: list[Window] = [s.take_window() for s in sessions]
        request = StepRequest(
            slots=[s.slot for s in sessions],
            features=np.stack([w.features for w in windows]),
            num_feature_frames=[w.num_frames for w in windows],
            init_slots=[s.slot for s in sessions if s.needs_init],
            init_language_weights=[s.options.language_weights for s in sessions if s.needs_init],
            reset_slots=[s.slot for s in sessions if s.needs_decoder_reset and not s.needs_init],
        )
        for session in sessions:
            session.in_flight = True
            session.needs_init = False
            session.needs_decoder_reset = False
        started = time.monotonic()
        for window in windows:
            self._queue_wait.observe(max(0.0, started - window.ready_at))
        try:
            result: StepResult = await self.worker.run(request)
        except asyncio.CancelledError:
            # The engine is stopping mid-step: end these streams so their slots are released.
            for session in sessions:
                session.step_failed(RuntimeError("the recognition engine stopped"))
            raise
        except Exception as error:
            log.exception("model step failed for a batch of %d streams", len(sessions))
            for session in sessions:
                session.step_failed(RuntimeError(f"model step failed: {error}"))
            return
        self.steps += 1
        self.max_batch_seen = max(self.max_batch_seen, len(sessions))
        audio_seconds = sum(result.num_frames) * self._frame_seconds
        self._batch_size.observe(len(sessions))
        self._step_seconds.observe(result.seconds)
        self._audio_seconds.inc(audio_seconds)
        self._rtf.observe(result.seconds, audio_seconds)
        tokens = result.tokens if result.tokens is not None else [None] * len(sessions)
        beams = result.beams if result.beams is not None else [None] * len(sessions)
        ctc = result.ctc_log_probs if result.ctc_log_probs is not None else [None] * len(sessions)
        outputs = zip(sessions, windows, tokens, beams, ctc, result.num_frames, strict=True)
        for session, window, stream_tokens, stream_beams, stream_ctc, frames in outputs:
            try:
                update = session.on_step(window, stream_tokens, frames, stream_beams, stream_ctc)
            except Exception as error:
                # A bug in one stream's result handling ends that stream, not the batch.
                log.exception("handling a step output failed")
                session.step_failed(RuntimeError(f"result handling failed: {error}"))
                continue
            if update is not None and update.results:
                self._partial_latency.observe(max(0.0, time.monotonic() - window.ready_at))
