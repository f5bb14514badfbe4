"""The model worker: one thread per device that runs batched steps off the event loop.

All slot-pool tensors are created and modified on this thread only (inside its
``BatchStepper``), so the event loop never waits on torch and the pool needs no locks.
Work items run in submission order, which is what makes slot reuse safe: a slot's fresh
state is written by the first step of its new stream, after any step of its previous
owner has finished.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from server.engine.batch import BatchOutput, BatchStepper, Window, WindowStart
from server.model.transducer import StreamingTransducer
from server.search.options import Search


class ModelWorker:
    """Runs a ``BatchStepper`` of ``capacity`` slots on its own thread."""

    def __init__(self, model: StreamingTransducer, search: Search, capacity: int, device: str) -> None:
        self.model = model
        self.search = search
        self.capacity = capacity
        self.device = device
        self._stepper = BatchStepper(model, search, capacity, device)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asr-worker-{model.config.name}")

    async def run(self, batch: list[tuple[int, Window]]) -> BatchOutput:
        """One batched step of (slot, window) pairs."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._stepper.step, batch)

    async def warmup(self, batch_sizes: list[int]) -> None:
        """Run throwaway steps so first requests do not pay for lazy initialisation."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warmup, batch_sizes)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _warmup(self, batch_sizes: list[int]) -> None:
        # Throwaway steps on the pool's first rows: every real stream's first window starts
        # its row afresh (``WindowStart.NEW_STREAM``), so nothing of this survives.
        bins = self.model.config.features.num_mel_bins
        silence = np.zeros((self.model.feature_window, bins), np.float32)
        window = Window(silence, self.model.feature_window, 0.0, False, WindowStart.NEW_STREAM)
        with torch.inference_mode():
            for batch in batch_sizes:
                self._stepper.step([(slot, window) for slot in range(min(batch, self.capacity))])
