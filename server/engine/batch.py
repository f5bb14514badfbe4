"""One batched step over a slot pool: many streams' windows in, each stream's slice of the result out.

The slot pool is one ``StreamState`` of ``capacity`` rows, one per stream; a step gathers the
batch's rows (index-select), runs ``decode_chunk`` once for all of them, and scatters the new
state back (index-copy). Streams join and leave without reallocating anything. This runs
synchronously: the server's worker calls it on its own thread, and offline callers (evaluation,
benchmarks, tests) call it directly, so they all run the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from torch import Tensor

from server.model.transducer import StreamingTransducer
from server.search.context_graph import ContextGraph
from server.search.hypotheses import BeamUpdate, beam_updates
from server.search.options import Search
from server.search.step import StreamState, decode_chunk, init_stream_state, reset_utterance_


class WindowStart(Enum):
    """What a window's stream needs done to its state row before the step."""

    CONTINUE = "continue"  # nothing: the row holds the state the previous step left
    NEW_STREAM = "new stream"  # a fresh row (the slot's previous owner left other state in it)
    NEW_UTTERANCE = "new utterance"  # the encoder runs on, the hypotheses restart (after an endpoint)


@dataclass(frozen=True)
class Window:
    """A stream's feature window for one model step.

    features: (feature_window, num_mel_bins) float32, zero-padded beyond ``num_frames``.
    ready_at: when the audio that completed it arrived (monotonic seconds, for latency metrics).
    is_final: the stream's last window (its final result follows).
    language_weights: (num_languages,) multi-hot mask, or None for all; read at ``NEW_STREAM``.
    context_graph: the stream's phrase-boosting graph, or None; read at ``NEW_STREAM``.
    multi_talker: the stream wants virtual channels (t-SOT, may emit ``<cc>``); read at ``NEW_STREAM``.
    """

    features: np.ndarray
    num_frames: int
    ready_at: float
    is_final: bool
    start: WindowStart
    language_weights: np.ndarray | None = None
    context_graph: ContextGraph | None = None
    multi_talker: bool = False


@dataclass(frozen=True)
class StreamStepOutput:
    """One stream's slice of a batched step: what it did to the stream's K hypotheses, the
    encoder frames it produced, and the CTC head's log-probabilities (num_frames, V) on the
    CPU when the search rescores finals with them."""

    update: BeamUpdate
    num_frames: int
    ctc_log_probs: Tensor | None = None


@dataclass(frozen=True)
class BatchOutput:
    """Per stream, in the batch's order; ``seconds`` is the step's wall time."""

    streams: list[StreamStepOutput]
    seconds: float


class BatchStepper:
    """Runs batched steps of ``model`` under ``search`` on a slot pool of ``capacity`` streams."""

    def __init__(self, model: StreamingTransducer, search: Search, capacity: int, device: str = "cpu") -> None:
        self.model = model
        self.search = search
        self.capacity = capacity
        self.device = device
        self._pool: StreamState | None = None  # created on first use, on the thread that runs the steps
        # Each slot's phrase-boosting graph (on ``device``), set when its stream starts.
        self._graphs: list[ContextGraph | None] = [None] * capacity

    @torch.inference_mode()
    def step(self, batch: list[tuple[int, Window]]) -> BatchOutput:
        """One step for (slot, window) pairs, each slot at most once."""
        pool = self._pool
        if pool is None:
            pool = self._pool = init_stream_state(self.model, self.search, self.capacity)
        self._prepare_rows(pool, batch)
        slots = [slot for slot, _ in batch]
        rows = self._rows(slots)
        features = torch.from_numpy(np.stack([window.features for _, window in batch])).to(self.device)
        num_feature_frames = torch.tensor([window.num_frames for _, window in batch], device=self.device)
        started = time.perf_counter()
        # Slots are handed out lowest first, so a batch is often a contiguous range: read it as views.
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        state = pool.narrow(slots[0], len(slots)) if contiguous else pool.select(rows)
        graphs = [self._graphs[slot] for slot in slots]
        contexts = graphs if any(graph is not None for graph in graphs) else None
        out = decode_chunk(self.model, self.search, features, num_feature_frames, state, contexts)
        if contiguous:
            state.copy_(out.state)
        else:
            pool.assign_(rows, out.state)
        num_frames = out.num_frames.tolist()  # syncs the device, so the timing is real
        updates = beam_updates(out.trace, out.state.beams.scores)
        ctc: list[Tensor | None] = [None] * len(batch)
        if out.ctc_log_probs is not None:
            ctc = [frames[:count] for frames, count in zip(out.ctc_log_probs.cpu(), num_frames, strict=True)]
        seconds = time.perf_counter() - started
        streams = [
            StreamStepOutput(update, frames, stream_ctc)
            for update, frames, stream_ctc in zip(updates, num_frames, ctc, strict=True)
        ]
        return BatchOutput(streams, seconds)

    def _rows(self, slots: list[int]) -> Tensor:
        return torch.tensor(slots, dtype=torch.int64, device=self.device)

    def _prepare_rows(self, pool: StreamState, batch: list[tuple[int, Window]]) -> None:
        """Fresh rows for new streams, restarted hypotheses after an endpoint."""
        new = [(slot, window) for slot, window in batch if window.start is WindowStart.NEW_STREAM]
        if new:
            weights = self._language_weights([window.language_weights for _, window in new])
            multi_talker = torch.tensor([window.multi_talker for _, window in new], device=self.device)
            fresh = init_stream_state(self.model, self.search, len(new), weights, multi_talker)
            pool.assign_(self._rows([slot for slot, _ in new]), fresh)
            for slot, window in new:
                graph = window.context_graph
                self._graphs[slot] = None if graph is None else graph.to(self.device)
        restart = [slot for slot, window in batch if window.start is WindowStart.NEW_UTTERANCE]
        if restart:
            reset_utterance_(self.model, pool, self._rows(restart))

    def _language_weights(self, weights: list[np.ndarray | None]) -> Tensor:
        num_languages = len(self.model.config.languages)
        rows = [np.ones(num_languages, np.float32) if w is None else w for w in weights]
        return torch.from_numpy(np.stack(rows).astype(np.float32)).to(self.device)
