"""Decoding speed of the streaming path, two ways.

- ``step``: the per-chunk model work, as this benchmark has always measured it: one stream's
  fbank windows, each stepped for N copies at once through the engine's ``BatchStepper`` (slot
  pool gather and scatter, encoder chunk, search, the step result as Python lists).
- ``stream``: everything a server spends per stream on top: N ``StreamDecoder``s, each with its
  own front end, hypotheses, endpointing and results (``server.engine.offline.decode_streams``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soxr
import torch

from server.engine.batch import BatchStepper
from server.engine.decoder import StreamDecoder, StreamOptions
from server.engine.offline import decode_streams, in_pieces
from server.model.transducer import StreamingTransducer
from server.search.options import Search
from training.manifest import read_audio, read_manifest


def stream_seconds(
    model: StreamingTransducer,
    search: Search,
    samples: np.ndarray,
    streams: int = 1,
    piece: int = 1600,
    multi_talker: bool = False,
) -> float:
    """Compute seconds to stream 16 kHz ``samples`` through ``streams`` identical streams in one batch
    (``multi_talker``: each asks for virtual channels, t-SOT)."""
    pieces = in_pieces(samples, piece)
    started = time.perf_counter()
    decode_streams(model, search, [pieces] * streams, StreamOptions(multi_talker=multi_talker))
    return time.perf_counter() - started


def step_seconds(
    model: StreamingTransducer,
    search: Search,
    samples: np.ndarray,
    streams: int = 1,
    piece: int = 1600,
    multi_talker: bool = False,
) -> float:
    """Compute seconds of the model steps alone: one front end, every window stepped for ``streams`` slots."""
    decoder = StreamDecoder(model, search, StreamOptions(multi_talker=multi_talker))
    stepper = BatchStepper(model, search, capacity=streams)
    started = time.perf_counter()
    for chunk in in_pieces(samples, piece):
        decoder.accept_audio(chunk)
        while decoder.has_window():
            window = decoder.next_window()
            stepper.step([(slot, window) for slot in range(streams)])
    decoder.finish()
    while decoder.has_window():
        window = decoder.next_window()
        stepper.step([(slot, window) for slot in range(streams)])
    return time.perf_counter() - started


PATHS = {"step": step_seconds, "stream": stream_seconds}


def real_time_factor(
    model: StreamingTransducer,
    search: Search,
    manifest: Path,
    utterances: int = 50,
    streams: int = 1,
    path: str = "step",
    multi_talker: bool = False,
) -> dict:
    """Compute time over audio time for the first ``utterances`` of a manifest, on ``path`` (see above),
    with every stream asking for multi-talker results or none."""
    audio_seconds = compute_seconds = 0.0
    for utterance in read_manifest(manifest)[:utterances]:
        samples, rate = read_audio(utterance.audio)
        if rate != model.config.sample_rate:
            samples = soxr.resample(samples, rate, model.config.sample_rate).astype(np.float32)
        audio_seconds += len(samples) / model.config.sample_rate * streams
        compute_seconds += PATHS[path](model, search, samples, streams, multi_talker=multi_talker)
    return {
        "streams": streams,
        "path": path,
        "multi_talker": multi_talker,
        "threads": torch.get_num_threads(),
        "audio_seconds": round(audio_seconds, 2),
        "compute_seconds": round(compute_seconds, 3),
        "real_time_factor": round(compute_seconds / audio_seconds, 4),
    }
