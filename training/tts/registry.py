"""All synthesis engines behind one call: ``synthesize(text, voice, sample_rate)`` and ``voices(language)``."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from training.tts import espeak, flite, kokoro, mbrola, pico, piper, rhvoice
from training.tts.base import LANGUAGES, Voice

ENGINES: dict[str, ModuleType] = {
    module.NAME: module for module in (espeak, mbrola, pico, rhvoice, flite, piper, kokoro)
}


def engine(name: str) -> ModuleType:
    """The engine module called ``name`` (a key of ``ENGINES``)."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown TTS engine {name!r}; known: {sorted(ENGINES)}") from None


def available_engines() -> list[str]:
    """The engines installed on this machine (``training/tts/install-engines.sh`` installs them all)."""
    return [name for name, module in ENGINES.items() if module.available()]


def voices(language: str, engines: list[str] | None = None) -> list[Voice]:
    """Every voice of ``language`` over ``engines`` (default: all installed engines)."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; known: {LANGUAGES}")
    names = available_engines() if engines is None else engines
    return [voice for name in names for voice in engine(name).voices(language)]


def synthesize(text: str, voice: Voice, sample_rate: int = 16000, speed: float = 1.0) -> np.ndarray:
    """Speech of ``text`` in ``voice``: float32 mono, shape ``(num_samples,)``, at ``sample_rate`` Hz.

    ``speed`` > 1 speaks faster, through each engine's own rate control.
    """
    if sample_rate <= 0 or speed <= 0:
        raise ValueError("sample_rate and speed must be positive")
    audio: np.ndarray = engine(voice.engine).synthesize(text, voice, sample_rate, speed=speed)
    return audio
