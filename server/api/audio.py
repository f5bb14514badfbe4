"""Incoming audio bytes -> float32 mono samples at the model's rate.

Decodes LINEAR16 / G.711 mu-law / G.711 A-law (Python 3.13 removed ``audioop``, so the
G.711 expansions are small lookup tables here), keeps samples of a frame that are split
across chunks, downmixes or selects a channel, and resamples incrementally with
``soxr.ResampleStream`` so chunk boundaries leave no trace in the output.
"""

from __future__ import annotations

import numpy as np
import soxr
from asr_client.api.asr.v1 import asr_pb2


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> linear 16-bit sample (ITU-T G.711, as audioop.ulaw2lin)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    """G.711 A-law byte -> linear 16-bit sample (ITU-T G.711, as audioop.alaw2lin)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    # In A-law a set sign bit means a positive sample.
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


MULAW_TABLE = _mulaw_table()
ALAW_TABLE = _alaw_table()

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000

# Bytes per sample of each encoding; ENCODING_UNSPECIFIED is LINEAR16.
BYTES_PER_SAMPLE: dict[int, int] = {
    asr_pb2.ENCODING_UNSPECIFIED: 2,
    asr_pb2.LINEAR16: 2,
    asr_pb2.MULAW: 1,
    asr_pb2.ALAW: 1,
}


class AudioFormatError(ValueError):
    """Audio bytes that do not match the configured format (INVALID_ARGUMENT)."""


def decode_samples(data: bytes, encoding: int) -> np.ndarray:
    """Raw bytes of whole samples -> int16 samples (interleaved channels untouched)."""
    if encoding in (asr_pb2.LINEAR16, asr_pb2.ENCODING_UNSPECIFIED):
        return np.frombuffer(data, dtype="<i2")
    codes = np.frombuffer(data, dtype=np.uint8)
    if encoding == asr_pb2.MULAW:
        return MULAW_TABLE[codes]
    if encoding == asr_pb2.ALAW:
        return ALAW_TABLE[codes]
    raise AudioFormatError(f"unsupported encoding {encoding}")


class AudioDecoder:
    """Stateful converter of one stream's audio chunks to float32 mono at ``target_rate``.

    ``selected_channel`` None averages all channels; otherwise only that channel is kept.
    """

    def __init__(
        self,
        encoding: int,
        sample_rate: int,
        channels: int,
        selected_channel: int | None,
        target_rate: int,
    ) -> None:
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.channels = channels
        self.selected_channel = selected_channel
        self.bytes_per_sample = BYTES_PER_SAMPLE[encoding]
        self._pending = b""  # bytes of an interleaved frame split across chunks
        self._resampler = (
            None
            if sample_rate == target_rate
            else soxr.ResampleStream(sample_rate, target_rate, 1, dtype="float32", quality="HQ")
        )
        self.input_frames = 0  # audio frames (samples per channel) received so far
        # After flush (the stream's audio ended: half-close, a drain, a voice activity timeout)
        # later chunks are dropped: the reader may still hand one over before it stops.
        self._flushed = False

    @property
    def input_seconds(self) -> float:
        return self.input_frames / self.sample_rate

    @property
    def piece_bytes(self) -> int:
        """How much of one message to decode at a time: 0.5 s of input audio, whole frames."""
        frame_bytes = self.bytes_per_sample * self.channels
        return max(frame_bytes, self.sample_rate // 2 * frame_bytes)

    def check_length(self, num_bytes: int) -> None:
        """Raise ``AudioFormatError`` unless a chunk of ``num_bytes`` holds whole samples."""
        if num_bytes % self.bytes_per_sample:
            raise AudioFormatError(
                f"LINEAR16 audio_content must hold whole 16-bit samples; got an odd-length chunk of {num_bytes} bytes"
            )

    def accept(self, data: bytes) -> np.ndarray:
        """Decode one chunk; returns the float32 mono samples it completes at the target rate."""
        self.check_length(len(data))
        if self._flushed:
            return np.zeros(0, np.float32)
        data = self._pending + data
        frame_bytes = self.bytes_per_sample * self.channels
        usable = len(data) - len(data) % frame_bytes
        self._pending = data[usable:]
        samples = decode_samples(data[:usable], self.encoding).astype(np.float32) / 32768.0
        frames = samples.reshape(-1, self.channels)
        self.input_frames += frames.shape[0]
        if self.selected_channel is not None:
            mono = frames[:, self.selected_channel]
        else:
            mono = frames.mean(axis=1, dtype=np.float32)
        return self._resample(np.ascontiguousarray(mono, dtype=np.float32), last=False)

    def flush(self) -> np.ndarray:
        """End of audio: the resampler's remaining output (a split trailing frame is dropped)."""
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        self._pending = b""
        return self._resample(np.zeros(0, np.float32), last=True)

    def close(self) -> None:
        """Free the resampler now, not when a reference cycle is collected (at exit, nanobind
        reports a still-alive soxr object as a leak)."""
        self._resampler = None
        self._pending = b""

    def _resample(self, mono: np.ndarray, last: bool) -> np.ndarray:
        return resample_chunk(self._resampler, mono, last)


def resample_chunk(resampler: soxr.ResampleStream | None, mono: np.ndarray, last: bool) -> np.ndarray:
    """The next piece of a stream's resampled audio (``resampler`` None: no resampling); ``last``
    flushes the resampler's delay line."""
    if resampler is None or (mono.size == 0 and not last):
        return mono
    return np.asarray(resampler.resample_chunk(mono, last=last), dtype=np.float32)
