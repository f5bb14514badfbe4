"""The recognition engine of one model: slot pool + scheduler + worker, and its sessions."""

from __future__ import annotations

import logging
from collections.abc import Callable

from server import metrics
from server.engine.decoder import StreamDecoder, StreamOptions
from server.engine.scheduler import BatchScheduler
from server.engine.session import StreamSession
from server.engine.slots import SlotAllocator
from server.engine.worker import ModelWorker
from server.model.transducer import StreamingTransducer
from server.search.options import Search

log = logging.getLogger(__name__)


class Engine:
    """Serves recognition sessions of one model on one device.

    ``capacity`` is the number of state slots. It should exceed the API layer's stream
    limit by ``max_batch_size``: a cancelled stream's slot is released only after the
    model step it is part of, and new streams must not be refused meanwhile.
    """

    def __init__(
        self,
        model: StreamingTransducer,
        device: str,
        capacity: int,
        max_batch_size: int,
        max_wait_s: float,
        search: Search | None = None,
        step_timeout_s: float = 0.0,
    ) -> None:
        self.model = model
        self.name = model.config.name
        self.device = device
        self._slots = SlotAllocator(capacity)
        self.search = search or Search()
        self.worker = ModelWorker(model, self.search, capacity, device)
        self.scheduler = BatchScheduler(
            self.worker,
            max_batch_size,
            max_wait_s,
            self.name,
            open_streams=lambda: self.num_active,
            step_timeout_s=step_timeout_s,
            on_stall=self._stall_changed,
        )
        # Called with (model name, stalled) when the worker stalls and when it recovers.
        self.stall_listeners: list[Callable[[str, bool], None]] = []
        self.stalled = False
        self._active = metrics.ACTIVE_STREAMS.labels(model=self.name)
        self._total = metrics.STREAMS_TOTAL.labels(model=self.name)
        self._final_latency = metrics.FINAL_LATENCY.labels(model=self.name)
        self.num_active = 0

    async def start(self, warmup: bool = True) -> None:
        """Start the scheduler; with ``warmup``, run throwaway steps first."""
        if warmup:
            sizes = sorted({1, self.scheduler.max_batch_size})
            await self.worker.warmup(sizes)
            log.info("model %s warmed up on %s (batch sizes %s)", self.name, self.device, sizes)
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        self.worker.shutdown()

    def open_session(self, options: StreamOptions) -> StreamSession:
        """A new stream; raises ``SlotExhaustedError`` when every slot is taken."""
        slot = self._slots.allocate()
        decoder = StreamDecoder(self.model, self.search, options)
        session = StreamSession(
            decoder,
            slot,
            submit=self.scheduler.submit,
            release=self._release,
            observe_final_latency=self._final_latency.observe,
        )
        self.num_active += 1
        self._active.inc()
        self._total.inc()
        return session

    def _stall_changed(self, stalled: bool) -> None:
        self.stalled = stalled
        for listener in self.stall_listeners:
            listener(self.name, stalled)

    def _release(self, session: StreamSession) -> None:
        self._slots.release(session.slot)
        self.num_active -= 1
        self._active.dec()

    @property
    def free_slots(self) -> int:
        return self._slots.num_free
