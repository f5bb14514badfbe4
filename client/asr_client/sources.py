"""Where the CLI's audio comes from: a file, or stdin (raw samples, or a WAV, FLAC or Ogg file)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from asr_client.api.asr.v1 import asr_pb2
from asr_client.audio import (
    BYTES_PER_SAMPLE,
    SIGNATURE_BYTES,
    PcmAudio,
    Readable,
    chunk_size_bytes,
    container_format,
    decode_audio,
    read_audio_file,
    read_stream_chunks,
    read_up_to,
    split_chunks,
)
from asr_client.wav import LimitedReader, read_wav_header

# --encoding NAME -> (the API's encoding, bytes per sample) of raw audio on stdin.
RAW_ENCODINGS: dict[str, tuple[asr_pb2.AudioEncoding, int]] = {
    "linear16": (asr_pb2.LINEAR16, 2),
    "mulaw": (asr_pb2.MULAW, 1),
    "alaw": (asr_pb2.ALAW, 1),
}


@dataclass(frozen=True)
class RawFormat:
    """What headerless samples on stdin are: ``--encoding``, ``--rate``, ``--channels``."""

    encoding: str = "linear16"
    sample_rate: int = 16000
    channels: int = 1


@dataclass(frozen=True)
class AudioSource:
    """Audio to stream: its chunks, and what the ``RecognitionConfig`` must say about them."""

    chunks: Iterator[bytes]
    encoding: asr_pb2.AudioEncoding
    sample_rate: int
    channels: int
    sample_bytes: int

    @property
    def bytes_per_second(self) -> int:
        """For pacing at real time."""
        return self.sample_rate * self.channels * self.sample_bytes


def pcm_source(audio: PcmAudio, chunk_ms: float) -> AudioSource:
    """Decoded LINEAR16 audio in chunks of ``chunk_ms``."""
    chunk = chunk_size_bytes(audio.sample_rate, audio.channels, chunk_ms)
    return AudioSource(
        split_chunks(audio.data, chunk), asr_pb2.LINEAR16, audio.sample_rate, audio.channels, BYTES_PER_SAMPLE
    )


def file_source(path: str | Path, chunk_ms: float) -> AudioSource:
    """A file in any format soundfile reads (OSError or AudioDecodeError if it cannot)."""
    return pcm_source(read_audio_file(path), chunk_ms)


def stream_source(stream: BinaryIO, raw: RawFormat, chunk_ms: float) -> AudioSource:
    """Audio from a pipe, told by its first bytes: headerless samples as ``raw`` says, sent as they
    arrive; a WAV of samples the API takes as they are (16-bit PCM, mu-law, A-law), also sent as
    they arrive; any other WAV, FLAC or Ogg, decoded here as files are, once it has all arrived."""
    header = read_up_to(stream, SIGNATURE_BYTES)
    container = container_format(header)
    if container is None:
        encoding, sample_bytes = RAW_ENCODINGS[raw.encoding]
        return _live_source(stream, encoding, raw.sample_rate, raw.channels, sample_bytes, chunk_ms, header)
    if container == "WAV":
        wav = read_wav_header(stream, header)
        if wav.format is not None:
            fmt = wav.format
            data = LimitedReader(stream, fmt.data_bytes)
            return _live_source(data, fmt.encoding, fmt.sample_rate, fmt.channels, fmt.sample_bytes, chunk_ms)
        header = wav.consumed
    # libsndfile seeks in what it decodes, so the rest is read to its end first.
    return pcm_source(decode_audio(header + stream.read()), chunk_ms)


def _live_source(
    stream: Readable,
    encoding: asr_pb2.AudioEncoding,
    sample_rate: int,
    channels: int,
    sample_bytes: int,
    chunk_ms: float,
    prefix: bytes = b"",
) -> AudioSource:
    chunk = chunk_size_bytes(sample_rate, channels, chunk_ms, sample_bytes)
    chunks = read_stream_chunks(stream, chunk, sample_bytes, prefix=prefix)
    return AudioSource(chunks, encoding, sample_rate, channels, sample_bytes)


def stdin_stream() -> BinaryIO:
    """Standard input, unbuffered: the thread that reads it may still be blocked in a read when
    the CLI exits (after Ctrl-C), and a buffered reader's lock held at shutdown aborts Python."""
    return os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
