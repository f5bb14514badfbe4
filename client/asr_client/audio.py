"""Audio for the client: files (anything soundfile reads) as LINEAR16, chunking and pacing."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

BYTES_PER_SAMPLE = 2  # LINEAR16

# Leading bytes of the containers that arrive on stdin instead of raw samples: WAV (RIFF and
# RF64), FLAC and Ogg (Vorbis, Opus, FLAC in Ogg). Raw PCM that happens to start so is unlikely.
CONTAINER_SIGNATURES = {b"RIFF": "WAV", b"RF64": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg"}
SIGNATURE_BYTES = 4


class Readable(Protocol):
    """What the stream readers need: ``read`` of up to ``size`` bytes, b"" at end of file."""

    def read(self, size: int = -1, /) -> bytes: ...


class AudioDecodeError(RuntimeError):
    """Audio that soundfile cannot decode; the message is libsndfile's reason."""


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

    The server resamples, so the audio is sent at its native rate and channel count. A file
    that cannot be opened raises ``OSError`` (``FileNotFoundError``, ...); one that is not audio
    soundfile knows, ``AudioDecodeError``.
    """
    # Opened here so that a missing file is a FileNotFoundError, not libsndfile's "System error".
    with open(path, "rb") as file:
        return _decode(file)


def decode_audio(data: bytes) -> PcmAudio:
    """A whole audio file's bytes (WAV, FLAC, Ogg, ...: what soundfile reads) as LINEAR16."""
    return _decode(io.BytesIO(data))


def container_format(header: bytes) -> str | None:
    """The container whose signature ``header`` starts with (``CONTAINER_SIGNATURES``), or None."""
    return CONTAINER_SIGNATURES.get(header[:SIGNATURE_BYTES])


def _decode(file: BinaryIO) -> PcmAudio:
    import numpy as np
    import soundfile

    try:
        samples, sample_rate = soundfile.read(file, dtype="int16", always_2d=True)
    except soundfile.LibsndfileError as error:
        # Its own message names the Python file object; the reason is what a user can act on.
        raise AudioDecodeError(error.error_string) from None
    return PcmAudio(np.ascontiguousarray(samples).astype("<i2").tobytes(), int(sample_rate), samples.shape[1])


def chunk_size_bytes(sample_rate: int, channels: int, chunk_ms: float, bytes_per_sample: int = 2) -> int:
    """Bytes of ``chunk_ms`` of audio, a whole number of frames, at least one frame."""
    frames = max(1, round(sample_rate * chunk_ms / 1000))
    return frames * channels * bytes_per_sample


def split_chunks(data: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """``data`` in pieces of ``chunk_bytes`` (the last may be shorter)."""
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes]


def read_stream_chunks(
    stream: Readable, chunk_bytes: int, sample_bytes: int = BYTES_PER_SAMPLE, prefix: bytes = b""
) -> Iterator[bytes]:
    """Chunks of ``prefix`` then a binary stream (e.g. stdin) as they arrive, until end of file.

    One read per chunk, of at most ``chunk_bytes``: from an unbuffered pipe a read returns what
    has arrived, so live audio goes out as soon as it comes. Chunks are cut to whole samples of
    ``sample_bytes`` (the remainder opens the next chunk); a partial sample at the very end is
    dropped.
    """
    pending = bytearray(prefix)
    while True:
        data = stream.read(max(sample_bytes, chunk_bytes - len(pending)))
        if not data:
            return
        pending += data
        whole = len(pending) - len(pending) % sample_bytes
        if whole:
            yield bytes(pending[:whole])
            del pending[:whole]


def read_up_to(stream: Readable, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``: fewer only at end of file."""
    data = bytearray()
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return bytes(data)


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
