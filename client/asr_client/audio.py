"""Audio for the client: files (anything soundfile reads) as LINEAR16, chunking and pacing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BYTES_PER_SAMPLE = 2  # LINEAR16


@dataclass(frozen=True)
class PcmAudio:
    """Signed 16-bit little-endian PCM, channels interleaved."""

    data: bytes
    sample_rate: int
    channels: int

    @property
    def duration_seconds(self) -> float:
        return len(self.data) / (BYTES_PER_SAMPLE * self.channels * self.sample_rate)


def read_audio_file(path: str | Path) -> PcmAudio:
    """Read any format soundfile (libsndfile) reads as LINEAR16 at the file's own rate.

    The server resamples, so the audio is sent at its native rate and channel count.
    """
    import numpy as np
    import soundfile

    samples, sample_rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    return PcmAudio(np.ascontiguousarray(samples).astype("<i2").tobytes(), int(sample_rate), samples.shape[1])


def chunk_size_bytes(sample_rate: int, channels: int, chunk_ms: float, bytes_per_sample: int = 2) -> int:
    """Bytes of ``chunk_ms`` of audio, a whole number of frames, at least one frame."""
    frames = max(1, round(sample_rate * chunk_ms / 1000))
    return frames * channels * bytes_per_sample


def split_chunks(data: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """``data`` in pieces of ``chunk_bytes`` (the last may be shorter)."""
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes]


def read_stream_chunks(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    """Chunks of a binary stream (e.g. stdin) as they arrive, until end of file.

    Reads whole chunks so that LINEAR16 chunks never split a sample, except possibly the
    last one of a truncated stream, which is trimmed to whole samples.
    """
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            return
        if len(chunk) % BYTES_PER_SAMPLE:
            chunk = chunk[: len(chunk) - len(chunk) % BYTES_PER_SAMPLE]
        if chunk:
            yield chunk


def paced(chunks: Iterable[bytes], bytes_per_second: float, speed: float | None) -> Iterator[bytes]:
    """Yield ``chunks`` no faster than ``speed`` times real time (None: as fast as possible).

    Like a microphone, a chunk is yielded once its audio has "played": at the time its
    end would have been recorded.
    """
    if not speed:
        yield from chunks
        return
    start = time.monotonic()
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        delay = start + sent / bytes_per_second / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


async def apaced(chunks: Iterable[bytes], bytes_per_second: float, speed: float | None) -> AsyncIterator[bytes]:
    """Async ``paced``: sleeps with ``asyncio.sleep``, so other tasks keep running."""
    start = time.monotonic()
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if speed:
            delay = start + sent / bytes_per_second / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield chunk
