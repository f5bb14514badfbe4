"""The header of a WAV stream on a pipe, so that its samples stream as they arrive.

``arecord`` and ``sox`` write WAV by default; decoding that only at end of file would hold a live
recording back until it stops. A WAV whose samples the API takes as they are (16-bit PCM,
G.711 mu-law or A-law) is therefore read header first and then streamed; any other WAV is left to
soundfile, whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from asr_client.api.asr.v1 import asr_pb2
from asr_client.audio import Readable, read_up_to

# WAVE format tags (mmreg.h) the API takes as they are, by sample width in bits.
_ENCODINGS = {(1, 16): asr_pb2.LINEAR16, (7, 8): asr_pb2.MULAW, (6, 8): asr_pb2.ALAW}
_EXTENSIBLE = 0xFFFE  # the real tag is the first two bytes of the sub-format GUID
# Data sizes a writer that cannot seek back puts in the header: read to the end of the stream.
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000}
_MAX_HEADER_BYTES = 1 << 20  # metadata chunks before the samples; beyond this, not a stream to follow


@dataclass(frozen=True)
class WavFormat:
    encoding: asr_pb2.AudioEncoding
    sample_rate: int
    channels: int
    sample_bytes: int
    data_bytes: int | None  # None: up to the end of the stream


@dataclass(frozen=True)
class WavHeader:
    """What was read of the stream (``consumed``), and the format when it can be streamed."""

    consumed: bytes
    format: WavFormat | None


def read_wav_header(stream: Readable, start: bytes) -> WavHeader:
    """Read a WAV stream up to its samples (``start``: its first bytes, already read)."""
    consumed = bytearray(start)
    consumed += read_up_to(stream, 12 - len(consumed))
    if len(consumed) < 12 or consumed[8:12] != b"WAVE":
        return WavHeader(bytes(consumed), None)
    fmt: tuple[asr_pb2.AudioEncoding, int, int, int] | None = None
    while len(consumed) < _MAX_HEADER_BYTES:
        chunk_header = read_up_to(stream, 8)
        consumed += chunk_header
        if len(chunk_header) < 8:
            break
        chunk_id, size = chunk_header[:4], struct.unpack("<I", chunk_header[4:])[0]
        if chunk_id == b"data":
            if fmt is None:
                break
            encoding, rate, channels, sample_bytes = fmt
            data_bytes = None if size in _UNKNOWN_SIZES else size
            return WavHeader(bytes(consumed), WavFormat(encoding, rate, channels, sample_bytes, data_bytes))
        body = read_up_to(stream, size + size % 2)  # chunks are padded to an even size
        consumed += body
        if chunk_id == b"fmt ":
            fmt = _format(body)
            if fmt is None:
                break
    return WavHeader(bytes(consumed), None)


def _format(body: bytes) -> tuple[asr_pb2.AudioEncoding, int, int, int] | None:
    """(encoding, rate, channels, bytes per sample) of a ``fmt `` chunk the API takes as is."""
    if len(body) < 16:
        return None
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]
    encoding = _ENCODINGS.get((tag, bits))
    if encoding is None or channels < 1 or rate < 1:
        return None
    return encoding, rate, channels, bits // 8


class LimitedReader:
    """At most ``limit`` bytes of ``stream`` (None: all of it): a WAV's data chunk, not what follows."""

    def __init__(self, stream: Readable, limit: int | None) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if self._left is None:
            return self._stream.read(size)
        if self._left <= 0:
            return b""
        data = self._stream.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data
