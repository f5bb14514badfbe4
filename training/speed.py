"""Decoding speed of the real streaming path: FbankStream -> FeatureWindows -> model.step."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soxr
import torch

from server.model.frontend import FbankStream
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows
from server.search.beam import SearchConfig
from training.manifest import read_audio, read_manifest


def stream_seconds(
    model: StreamingTransducer,
    samples: np.ndarray,
    streams: int = 1,
    piece: int = 1600,
    search: SearchConfig | None = None,
) -> float:
    """Compute seconds to stream 16 kHz ``samples`` through ``streams`` identical streams in one batch.

    ``search`` defaults to the model's own (``default_search``).
    """
    search = search or model.default_search
    fbank = FbankStream(model.config.features)
    windows = FeatureWindows(model.feature_window, model.feature_shift)
    state = model.init_state(streams, search=search)
    started = time.perf_counter()

    def run(window: np.ndarray, real: int) -> None:
        nonlocal state
        features = torch.from_numpy(window)[None].expand(streams, -1, -1).contiguous()
        state = model.step(features, torch.full((streams,), real), state, search).state

    for start in range(0, len(samples), piece):
        windows.push(fbank.accept(samples[start : start + piece]))
        while windows.ready():
            run(windows.pop_window(), model.feature_window)
    for window, real in windows.final_windows():
        run(window, real)
    return time.perf_counter() - started


def real_time_factor(
    model: StreamingTransducer,
    manifest: Path,
    utterances: int = 50,
    streams: int = 1,
    search: SearchConfig | None = None,
) -> dict:
    """Compute time over audio time for the first ``utterances`` of a manifest."""
    audio_seconds = compute_seconds = 0.0
    for utterance in read_manifest(manifest)[:utterances]:
        samples, rate = read_audio(utterance.audio)
        if rate != model.config.sample_rate:
            samples = soxr.resample(samples, rate, model.config.sample_rate).astype(np.float32)
        audio_seconds += len(samples) / model.config.sample_rate * streams
        compute_seconds += stream_seconds(model, samples, streams, search=search)
    return {
        "streams": streams,
        "threads": torch.get_num_threads(),
        "audio_seconds": round(audio_seconds, 2),
        "compute_seconds": round(compute_seconds, 3),
        "real_time_factor": round(compute_seconds / audio_seconds, 4),
    }
