"""Signal processing of synthesized speech: levels, silence trimming, resampling, noise, the phone channel."""

from __future__ import annotations

import numpy as np
import soxr


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return audio.astype(np.float32)
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def trim_silence(audio: np.ndarray, sample_rate: int, relative_threshold: float = 0.01) -> np.ndarray:
    """Cut espeak's leading/trailing silence (keeping 10 ms) so the added silence is exact."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    loud = np.flatnonzero(np.abs(audio) > relative_threshold * peak) if peak > 0 else np.array([], int)
    if loud.size == 0:
        return audio
    margin = sample_rate // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def _fft_size(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


def colored_noise(num_samples: int, color: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Unit-RMS noise: white (flat), pink (power ~ 1/f) or brown (power ~ 1/f^2)."""
    if num_samples == 0:
        return np.zeros(0, np.float32)
    noise: np.ndarray
    if color == "white":
        noise = rng.standard_normal(num_samples, dtype=np.float32)
    else:
        amplitude_exponent = {"pink": 0.5, "brown": 1.0}[color]
        size = _fft_size(num_samples)
        spectrum = np.fft.rfft(rng.standard_normal(size, dtype=np.float32))
        # Below 20 Hz the shaping stops, or brown noise would be all DC drift.
        spectrum *= np.maximum(np.fft.rfftfreq(size, 1.0 / sample_rate), 20.0) ** -amplitude_exponent
        noise = np.fft.irfft(spectrum, size)[:num_samples]
    return (noise / max(rms(noise), 1e-12)).astype(np.float32)


def telephone_band(audio: np.ndarray, sample_rate: int, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    """Band-limit to the telephone channel (300-3400 Hz) with gentle FFT-domain ramps."""
    size = _fft_size(len(audio) * 2)  # zero padding: no wrap-around of the filter's ringing
    frequencies = np.fft.rfftfreq(size, 1.0 / sample_rate)
    gain = np.clip((frequencies - 0.6 * low) / (0.4 * low), 0.0, 1.0) * np.clip(
        (1.08 * high - frequencies) / (0.08 * high), 0.0, 1.0
    )
    return np.fft.irfft(np.fft.rfft(audio, size) * gain, size)[: len(audio)].astype(np.float32)


def mulaw_roundtrip(audio: np.ndarray, mu: int = 255) -> np.ndarray:
    """Encode to 8-bit mu-law and back: the quantization noise of G.711 telephone audio."""
    x = np.clip(audio, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantized = np.round((encoded + 1.0) * 127.5) / 127.5 - 1.0
    return (np.sign(quantized) * np.expm1(np.abs(quantized) * np.log1p(mu)) / mu).astype(np.float32)


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
