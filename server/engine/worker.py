"""The model worker: one thread per device that runs batched model steps off the event loop.

All state-pool tensors are created and modified on this thread only, so the event loop
never waits on torch and the pool needs no locks. Work items run in submission order,
which is what makes slot (re)initialisation safe: a slot's fresh state is written by the
first step of its new stream, after any step of its previous owner has finished.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from server.model.transducer import StreamingTransducer
from server.search.beam import BeamUpdate, SearchConfig, beam_updates


@dataclass
class StepRequest:
    """One batch: B streams' windows and bookkeeping for their slots."""

    slots: list[int]
    features: np.ndarray  # (B, feature_window, num_mel_bins) float32
    num_feature_frames: list[int]
    # Slots whose stream is new: their state row is initialised before the step, with
    # the per-stream language weights (num_languages,) or None for all languages.
    init_slots: list[int]
    init_language_weights: list[np.ndarray | None]
    # Slots whose stream just ended an utterance: decoder context back to blank.
    reset_slots: list[int]


@dataclass
class StepResult:
    """Per stream: ``tokens`` (greedy search) or ``beams`` (beam search), and frames produced;
    ``ctc_log_probs`` (num_frames, V) on the CPU when final results are rescored with the CTC head."""

    tokens: list[list[tuple[int, int]]] | None
    num_frames: list[int]
    seconds: float  # wall time of the model step
    beams: list[BeamUpdate] | None = None
    ctc_log_probs: list[torch.Tensor] | None = None


class ModelWorker:
    """Runs ``StreamingTransducer.step`` on a slot pool of ``capacity`` streams."""

    def __init__(
        self, model: StreamingTransducer, capacity: int, device: str, search: SearchConfig | None = None
    ) -> None:
        self.model = model
        self.search = search or model.default_search
        self.capacity = capacity
        self.device = device
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asr-worker-{model.config.name}")
        self._pool = None  # StreamState of ``capacity`` rows, created on the worker thread

    async def run(self, request: StepRequest) -> StepResult:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._step, request)

    async def warmup(self, batch_sizes: list[int]) -> None:
        """Run throwaway steps so first requests do not pay for lazy initialisation."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warmup, batch_sizes)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- on the worker thread --------------------------------------------------------------
    def _ensure_pool(self) -> None:
        if self._pool is None:
            with torch.inference_mode():
                self._pool = self.model.init_state(self.capacity, search=self.search)

    def _language_weights(self, weights: list[np.ndarray | None]) -> torch.Tensor:
        num_languages = len(self.model.config.languages)
        rows = [np.ones(num_languages, np.float32) if w is None else w for w in weights]
        return torch.from_numpy(np.stack(rows).astype(np.float32)).to(self.device)

    def _step(self, request: StepRequest) -> StepResult:
        self._ensure_pool()
        pool = self._pool
        with torch.inference_mode():
            if request.init_slots:
                init_rows = torch.tensor(request.init_slots, dtype=torch.int64, device=self.device)
                fresh = self.model.init_state(
                    len(request.init_slots), self._language_weights(request.init_language_weights), self.search
                )
                pool.assign_(init_rows, fresh)
            if request.reset_slots:
                reset_rows = torch.tensor(request.reset_slots, dtype=torch.int64, device=self.device)
                self.model.reset_decoder(pool, reset_rows)
            device = self.device
            rows = torch.tensor(request.slots, dtype=torch.int64, device=device)
            features = torch.from_numpy(request.features).to(device)
            num_feature_frames = torch.tensor(request.num_feature_frames, dtype=torch.int64, device=device)
            start = time.perf_counter()
            out = self.model.step(features, num_feature_frames, pool.select(rows), self.search)
            pool.assign_(rows, out.state)
            num_frames = out.num_frames.tolist()  # syncs the device, so the timing is real
            beams = None if out.trace is None else beam_updates(out.trace, out.state.beam_scores)
            ctc = None
            if out.ctc_log_probs is not None:
                ctc = [frames[:count] for frames, count in zip(out.ctc_log_probs.cpu(), num_frames, strict=True)]
            seconds = time.perf_counter() - start
        return StepResult(tokens=out.tokens, num_frames=num_frames, seconds=seconds, beams=beams, ctc_log_probs=ctc)

    def _warmup(self, batch_sizes: list[int]) -> None:
        self._ensure_pool()
        window, bins = self.model.feature_window, self.model.config.features.num_mel_bins
        with torch.inference_mode():
            for batch in batch_sizes:
                state = self.model.init_state(batch, search=self.search)
                features = torch.zeros(batch, window, bins, device=self.device)
                frames = torch.full((batch,), window, dtype=torch.int64, device=self.device)
                self.model.step(features, frames, state, self.search)
