"""What every synthesis engine module shares: the voice type, WAV reading and resampling.

An engine module (``training.tts.espeak``, ``.mbrola``, ``.pico``, ...) exposes

- ``NAME`` (the engine's name in ``Voice.engine``), ``LICENCE`` (one line; details in
  ``docs/voices-and-licences.md``) and ``LANGUAGES`` (the languages it has voices for);
- ``available() -> bool``: whether the engine is installed on this machine;
- ``voices(language) -> list[Voice]``: its voice inventory for a language (empty if none);
- ``synthesize(text, voice, sample_rate, speed=1.0) -> np.ndarray``: float32 mono samples, shape
  ``(num_samples,)``, in [-1, 1], at ``sample_rate`` Hz; ``speed`` > 1 speaks faster.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# The five languages of the multilingual model (ISO 639-1).
LANGUAGES = ("en", "de", "fr", "es", "it")


@dataclass(frozen=True, order=True)
class Voice:
    """One voice of one engine speaking one language.

    ``name`` is what the engine itself calls the voice (``en-us+m3`` for espeak-ng, ``mb-de3`` for
    mbrola, ``fr-FR`` for Pico, ``slt`` for flite and RHVoice, ``joe`` for Piper, a voice-pack
    blend such as ``jf_alpha:0.7+jm_kumo:0.3`` for Kokoro), so a manifest line can name it exactly.
    """

    engine: str
    language: str
    name: str

    @property
    def id(self) -> str:
        """``engine:language:name``: unique across engines (Kokoro speaks one voice in several languages)."""
        return f"{self.engine}:{self.language}:{self.name}"


class SynthesisError(RuntimeError):
    """An engine failed on a text (crashed, printed nothing, or is not installed)."""


def to_mono_float32(audio: np.ndarray) -> np.ndarray:
    """Float32 mono of ``audio``, shape ``(num_samples,)`` or ``(num_samples, channels)``."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``audio`` (float32, shape ``(n,)``) resampled from ``from_rate`` to ``to_rate`` Hz with soxr."""
    if from_rate == to_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def finish(audio: np.ndarray, native_rate: int, sample_rate: int) -> np.ndarray:
    """Engine output at its native rate -> float32 mono at ``sample_rate``, clipped to [-1, 1]."""
    audio = resample(to_mono_float32(audio), native_rate, sample_rate)
    return np.clip(audio, -1.0, 1.0)


def run_to_wav(command: Sequence[str], wav_name: str = "out.wav", stdin: str | None = None) -> tuple[np.ndarray, int]:
    """Run an engine that writes a WAV file; return (float32 mono samples, native rate).

    ``command`` may contain ``{wav}``, replaced by the path of a fresh temporary file (some engines,
    such as pico2wave, insist on a ``.wav`` name and cannot write to stdout).
    """
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        wav = Path(tmp) / wav_name
        argv = [part.replace("{wav}", str(wav)) for part in command]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
            message = (result.stderr or result.stdout).strip()[-300:]
            raise SynthesisError(f"{argv[0]} failed ({result.returncode}): {message}")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=False)
    return to_mono_float32(audio), int(rate)


def check_engine(voice: Voice, engine: str) -> None:
    """Refuse (``ValueError``) a voice of another engine than ``engine``."""
    if voice.engine != engine:
        raise ValueError(f"not a {engine} voice: {voice}")


def synthesize_to_wav(
    command: Sequence[str], sample_rate: int, wav_name: str = "out.wav", stdin: str | None = None
) -> np.ndarray:
    """Run an engine that writes a WAV file (``run_to_wav``); its speech as float32 mono at ``sample_rate``."""
    audio, native_rate = run_to_wav(command, wav_name, stdin)
    return finish(audio, native_rate, sample_rate)
