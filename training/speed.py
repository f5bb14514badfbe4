"""Decoding speed of the real streaming path: the engine's per-stream decoders and batch stepper."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soxr
import torch

from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams, in_pieces
from server.model.transducer import StreamingTransducer
from server.search.options import Search
from training.manifest import read_audio, read_manifest


def stream_seconds(
    model: StreamingTransducer, search: Search, samples: np.ndarray, streams: int = 1, piece: int = 1600
) -> float:
    """Compute seconds to stream 16 kHz ``samples`` through ``streams`` identical streams in one batch."""
    pieces = in_pieces(samples, piece)
    started = time.perf_counter()
    decode_streams(model, search, [pieces] * streams, StreamOptions())
    return time.perf_counter() - started


def real_time_factor(
    model: StreamingTransducer, search: Search, manifest: Path, utterances: int = 50, streams: int = 1
) -> dict:
    """Compute time over audio time for the first ``utterances`` of a manifest."""
    audio_seconds = compute_seconds = 0.0
    for utterance in read_manifest(manifest)[:utterances]:
        samples, rate = read_audio(utterance.audio)
        if rate != model.config.sample_rate:
            samples = soxr.resample(samples, rate, model.config.sample_rate).astype(np.float32)
        audio_seconds += len(samples) / model.config.sample_rate * streams
        compute_seconds += stream_seconds(model, search, samples, streams)
    return {
        "streams": streams,
        "threads": torch.get_num_threads(),
        "audio_seconds": round(audio_seconds, 2),
        "compute_seconds": round(compute_seconds, 3),
        "real_time_factor": round(compute_seconds / audio_seconds, 4),
    }
