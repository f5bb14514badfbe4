"""Augmentations of clean synthetic speech: one pure function per effect, float32 mono in and out.

Every function takes samples of shape ``(n,)`` at ``rate`` Hz and returns a new array; the random
parameters are drawn by the caller (``training.multilingual.plan``), so rendering is deterministic.
The noise colours, the telephone band filter and resampling are ``training.signal_ops``'s.
"""

from __future__ import annotations

import numpy as np

from training.multilingual import g711
from training.signal_ops import colored_noise, db_to_gain, resample, rms, telephone_band

TELEPHONE_RATE = 8000


def speed(audio: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """Play ``factor`` times faster, pitch moving with it (Kaldi-style speed perturbation): ``(n / factor,)``."""
    return resample(audio, round(rate * factor), rate)


def tempo(audio: np.ndarray, rate: int, factor: float, frame_s: float = 0.03) -> np.ndarray:
    """``factor`` times faster at the same pitch, by WSOLA: shape about ``(n / factor,)``.

    Output frames (Hann window, 50% overlap) are read from the input at ``factor`` times the
    output hop, each shifted within +-half a hop to the position that best continues the previous
    frame's natural continuation (cross-correlation), so periods line up and no echo appears.
    """
    frame = max(16, int(rate * frame_s)) // 2 * 2
    hop, tolerance = frame // 2, frame // 4
    window = np.hanning(frame).astype(np.float32)
    padded = np.concatenate([np.zeros(tolerance, np.float32), audio, np.zeros(frame + tolerance, np.float32)])
    frames = max(1, int((len(audio) / factor) / hop))
    out = np.zeros(frames * hop + frame, np.float32)
    previous_end = tolerance  # where the previous frame's natural continuation starts
    for index in range(frames):
        nominal = tolerance + int(index * hop * factor)
        if index == 0:
            start = nominal
        else:
            target = padded[previous_end : previous_end + frame]
            lo = max(0, nominal - tolerance)
            region = padded[lo : nominal + tolerance + frame]
            scores = np.correlate(region, target, mode="valid")
            start = lo + int(np.argmax(scores))
        out[index * hop : index * hop + frame] += window * padded[start : start + frame]
        previous_end = start + hop
    return out[: int(len(audio) / factor)]


def room_impulse_response(rate: int, rt60: float, rng: np.random.Generator, direct_db: float) -> np.ndarray:
    """A synthetic room: direct path, then exponentially decaying noise (-60 dB at ``rt60`` s): ``(m,)``.

    ``direct_db`` is the direct-to-reverberant energy ratio (lower: farther from the microphone).
    """
    length = int(rate * rt60 * 1.2)
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * np.exp(-6.908 * t / rt60)  # ln(1000) = 6.908: 60 dB of amplitude
    tail[: int(0.002 * rate)] = 0.0  # the first reflections arrive a few ms after the direct sound
    tail *= db_to_gain(-direct_db) / max(float(np.sqrt(np.sum(tail**2))), 1e-12)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(audio: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """``audio`` convolved with the room: shape ``(n + m - 1,)`` (the tail rings on), same RMS as the input."""
    size = 1 << (len(audio) + len(impulse_response) - 2).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(impulse_response, size), size)
    wet = wet[: len(audio) + len(impulse_response) - 1]
    return (wet * (rms(audio) / max(rms(wet), 1e-12))).astype(np.float32)


def add_noise(audio: np.ndarray, rate: int, color: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` plus white, pink or brown noise at ``snr_db`` below its RMS: shape ``(n,)``."""
    noise = colored_noise(len(audio), color, rng, rate)
    return (audio + noise * (rms(audio) / db_to_gain(snr_db))).astype(np.float32)


def babble(audio: np.ndarray, others: list[np.ndarray], levels_db: list[float], offsets: list[float]) -> np.ndarray:
    """``audio`` with other utterances mixed in ``levels_db`` below it, each starting at ``offsets``
    (fractions of ``audio``'s length) and cut or looped to fit: shape ``(n,)``."""
    out = audio.astype(np.float32, copy=True)
    speech_rms = rms(audio)
    for other, level_db, offset in zip(others, levels_db, offsets, strict=True):
        if other.size == 0 or rms(other) == 0:
            continue
        start = int(offset * len(audio))
        length = len(audio) - start
        piece = np.tile(other, length // len(other) + 1)[:length]
        out[start:] += piece * (speech_rms / rms(other) / db_to_gain(level_db))
    return out


def telephone(audio: np.ndarray, rate: int, law: str) -> np.ndarray:
    """The phone channel: to 8 kHz, 300-3400 Hz band, G.711 ``law`` round trip: shape ``(n * 8000 / rate,)``."""
    narrow = telephone_band(resample(audio, rate, TELEPHONE_RATE), TELEPHONE_RATE)
    return g711.roundtrip(np.clip(narrow, -1.0, 1.0), law)


def set_level(audio: np.ndarray, level_db: float, peak_limit: float = 0.99) -> np.ndarray:
    """Scale to ``level_db`` dBFS RMS, then down (never clipping) if a peak would pass ``peak_limit``."""
    scaled = audio * (db_to_gain(level_db) / max(rms(audio), 1e-12))
    peak = float(np.max(np.abs(scaled))) if scaled.size else 0.0
    if peak > peak_limit:
        scaled *= peak_limit / peak
    return scaled.astype(np.float32)
