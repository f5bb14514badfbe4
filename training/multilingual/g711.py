"""G.711 mu-law and A-law in numpy (``audioop``, which had them, is gone from Python 3.13).

The encoders follow ITU-T G.711 as ``audioop.lin2ulaw`` / ``lin2alaw`` did (segment search on the
14-bit / 13-bit magnitude); the decoders are the service's own tables (``server.api.audio``), so a
round trip here is exactly what a telephony client's audio goes through before the server sees it.
"""

from __future__ import annotations

import numpy as np

from server.api.audio import ALAW_TABLE, MULAW_TABLE

_MULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1], shape ``(n,)`` -> int32 holding 16-bit values."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32767.0), -32768, 32767).astype(np.int32)


def mulaw_encode(audio: np.ndarray) -> np.ndarray:
    """Float samples, shape ``(n,)`` -> mu-law bytes, uint8 ``(n,)``."""
    pcm = _pcm16(audio) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    segment = np.searchsorted(_MULAW_SEGMENT_ENDS, magnitude)  # first end >= magnitude
    value = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return (value ^ mask).astype(np.uint8)


def alaw_encode(audio: np.ndarray) -> np.ndarray:
    """Float samples, shape ``(n,)`` -> A-law bytes, uint8 ``(n,)``."""
    pcm = _pcm16(audio) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)
    shift = np.where(segment < 2, 1, segment)
    value = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F))
    return (value ^ mask).astype(np.uint8)


def decode(codes: np.ndarray, law: str) -> np.ndarray:
    """G.711 bytes (uint8 ``(n,)``) -> float32 samples ``(n,)`` in [-1, 1]."""
    table = MULAW_TABLE if law == "mulaw" else ALAW_TABLE
    return (table[codes].astype(np.float32) / 32768.0).astype(np.float32)


def roundtrip(audio: np.ndarray, law: str) -> np.ndarray:
    """Encode and decode with ``law`` ("mulaw" or "alaw"): float32 ``(n,)`` with G.711's quantization noise."""
    if law not in ("mulaw", "alaw"):
        raise ValueError(f"law must be mulaw or alaw, not {law!r}")
    codes = mulaw_encode(audio) if law == "mulaw" else alaw_encode(audio)
    return decode(codes, law)
