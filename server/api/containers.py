"""Streamed FLAC and Ogg Opus bytes -> float32 mono samples at the model's rate, incrementally.

libsndfile (through soundfile) decodes both, but from a whole file, not from a stream that is
still arriving. So the decoder keeps the bytes received so far and, whenever enough new bytes
have come, opens them as a file, seeks to the first frame it has not yet returned and reads in
blocks until the data runs out: a FLAC frame or Ogg page cut at the end does not decode (both
carry checksums), and is read again, whole, on the next attempt. Frames come out exactly once,
in order, and nothing is lost at chunk boundaries.

The bytes are kept for the whole stream (libsndfile needs the header and seeks in them), so a
container stream is limited to ``MAX_CONTAINER_BYTES``; raw encodings have no such limit.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr
from asr_client.api.asr.v1 import asr_pb2

from server.api.audio import AudioFormatError, resample_chunk

# 64 MiB: about an hour of 16-kHz FLAC, several hours of Opus.
MAX_CONTAINER_BYTES = 64 * 1024 * 1024
# Decode once this many new bytes have arrived (re-opening costs a header parse and a seek).
_DECODE_EVERY_BYTES = 8 * 1024
# A stream whose header has not parsed after this many bytes is not of the configured format.
_MAX_HEADER_BYTES = 256 * 1024
_READ_BLOCK = 4096
CONTAINER_FORMATS: dict[int, str] = {asr_pb2.FLAC: "FLAC", asr_pb2.OGG_OPUS: "OGG"}
_NAMES: dict[int, str] = {asr_pb2.FLAC: "FLAC", asr_pb2.OGG_OPUS: "OGG_OPUS"}


class _Received(io.RawIOBase):
    """The bytes received so far as a read-only, seekable file, without copying them all: libsndfile
    reads the header, seeks and reads frames, a few kilobytes each time."""

    def __init__(self, data: bytearray) -> None:
        self._data = data
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._data)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data[self._position : self._position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


class ContainerDecoder:
    """One stream's FLAC or Ogg Opus bytes -> float32 mono at ``target_rate``.

    ``selected_channel`` None averages the channels; ``expected_rate`` (0: any) is checked
    against the header's rate. Same interface as ``AudioDecoder``.
    """

    def __init__(self, encoding: int, expected_rate: int, selected_channel: int | None, target_rate: int) -> None:
        if encoding not in CONTAINER_FORMATS:
            raise ValueError(f"not a container encoding: {encoding}")
        self.encoding = encoding
        self.name = _NAMES[encoding]
        self.expected_rate = expected_rate
        self.selected_channel = selected_channel
        self.target_rate = target_rate
        self.sample_rate = 0  # from the header, once it has arrived
        self.channels = 0
        self.piece_bytes = 32 * 1024  # how much of one message to feed at a time (servicer)
        self._data = bytearray()
        self._undecoded = 0  # bytes received since the last decode attempt
        self._frames_done = 0  # frames (per channel) returned so far
        self._resampler: soxr.ResampleStream | None = None
        self._flushed = False  # later chunks are dropped (as ``AudioDecoder`` does)

    @property
    def input_seconds(self) -> float:
        return self._frames_done / self.sample_rate if self.sample_rate else 0.0

    def check_length(self, num_bytes: int) -> None:
        """Any length is fine: the container frames the samples."""

    def accept(self, data: bytes) -> np.ndarray:
        """Take one chunk; returns the samples of the frames it completed."""
        if len(self._data) + len(data) > MAX_CONTAINER_BYTES:
            raise AudioFormatError(
                f"{self.name} streams are limited to {MAX_CONTAINER_BYTES // 2**20} MiB; "
                "send longer audio as LINEAR16, MULAW or ALAW"
            )
        if self._flushed:
            return np.zeros(0, np.float32)
        self._data += data
        self._undecoded += len(data)
        if self._undecoded < _DECODE_EVERY_BYTES:
            return np.zeros(0, np.float32)
        return self._decode(last=False)

    def flush(self) -> np.ndarray:
        """End of the stream: whatever frames remain."""
        if self._flushed or not self._data:
            self._flushed = True
            return np.zeros(0, np.float32)
        self._flushed = True
        if self.encoding == asr_pb2.OGG_OPUS:
            self._check_whole_pages()
        return self._decode(last=True)

    def close(self) -> None:
        self._resampler = None
        self._data = bytearray()

    # -- decoding ---------------------------------------------------------------------------------
    def _open(self, last: bool) -> sf.SoundFile | None:
        """The bytes so far as a file; None while the header is incomplete."""
        try:
            audio = sf.SoundFile(_Received(self._data))
        except (sf.LibsndfileError, RuntimeError) as error:
            if last or len(self._data) > _MAX_HEADER_BYTES:
                raise AudioFormatError(
                    f"the audio is not a {self.name} stream (or its header is damaged): {_reason(error)}"
                ) from None
            return None
        if audio.format != CONTAINER_FORMATS[self.encoding]:
            audio.close()
            raise AudioFormatError(
                f"encoding {self.name} was configured, but the audio is {audio.format}; "
                "set the encoding to what the stream holds"
            )
        if not self.sample_rate:
            self._start(audio)
        return audio

    def _start(self, audio: sf.SoundFile) -> None:
        """The header has arrived: check it against the configuration."""
        if self.expected_rate and audio.samplerate != self.expected_rate:
            raise AudioFormatError(
                f"sample_rate_hertz is {self.expected_rate} but the {self.name} header says "
                f"{audio.samplerate}; set it to 0 to take the header's"
            )
        if self.selected_channel is not None and self.selected_channel >= audio.channels:
            raise AudioFormatError(
                f"selected_channel {self.selected_channel} does not exist in this {self.name} stream "
                f"with {audio.channels} channel(s)"
            )
        self.sample_rate, self.channels = audio.samplerate, audio.channels
        if self.sample_rate != self.target_rate:
            self._resampler = soxr.ResampleStream(self.sample_rate, self.target_rate, 1, dtype="float32", quality="HQ")

    def _decode(self, last: bool) -> np.ndarray:
        self._undecoded = 0
        audio = self._open(last)
        if audio is None:
            return np.zeros(0, np.float32)
        blocks = []
        with audio:
            try:
                if self._frames_done:
                    audio.seek(self._frames_done)
                while True:
                    block = audio.read(_READ_BLOCK, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    blocks.append(block)
                    self._frames_done += len(block)
            except (sf.LibsndfileError, RuntimeError):
                pass  # the data ends inside a frame: read it whole next time
            if last:
                self._check_complete(audio)
        frames = np.concatenate(blocks) if blocks else np.zeros((0, max(1, self.channels)), np.float32)
        mono = frames[:, self.selected_channel] if self.selected_channel is not None else frames.mean(axis=1)
        return resample_chunk(self._resampler, np.ascontiguousarray(mono, dtype=np.float32), last)

    def _check_whole_pages(self) -> None:
        """At the end of an Ogg stream: its last page must have arrived whole."""
        if not self._data.startswith(b"OggS"):
            raise AudioFormatError("the audio is not a OGG_OPUS stream (it does not start with an Ogg page)")
        end = ogg_pages_end(self._data)
        if end != len(self._data):
            raise AudioFormatError(
                f"the OGG_OPUS stream ends inside an Ogg page ({len(self._data) - end} bytes after the "
                "last whole page): send the whole file"
            )

    def _check_complete(self, audio: sf.SoundFile) -> None:
        """At the end of a FLAC stream: its last frame must have arrived whole."""
        if self.encoding == asr_pb2.FLAC and 0 < audio.frames != self._frames_done:
            raise AudioFormatError(
                f"the FLAC stream ends inside a frame ({self._frames_done} of the {audio.frames} samples "
                "its header announces decoded): send the whole file"
            )


def _reason(error: Exception) -> str:
    """libsndfile's reason without the file object's repr that soundfile puts before it."""
    return str(error).rsplit(": ", 1)[-1]


def ogg_pages_end(data: bytes | bytearray) -> int:
    """Where the last whole Ogg page of ``data`` ends (0 if the first is not whole).

    A page: "OggS", 22 header bytes of which the 27th byte counts the lacing values, the lacing
    values (one byte per segment), then the segments (RFC 3533).
    """
    position = 0
    while len(data) - position >= 27 and data[position : position + 4] == b"OggS":
        segments = data[position + 26]
        header = 27 + segments
        if len(data) - position < header:
            break
        size = header + sum(data[position + 27 : position + header])
        if len(data) - position < size:
            break
        position += size
    return position


def container_seconds(data: bytes, encoding: int) -> float:
    """Duration of a whole FLAC / Ogg Opus file (Recognize's limit); ``AudioFormatError`` if it does not parse."""
    try:
        info = sf.info(_Received(bytearray(data)))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioFormatError(
            f"the audio is not a {_NAMES[encoding]} file (or it is damaged): {_reason(error)}"
        ) from None
    return float(info.duration)
