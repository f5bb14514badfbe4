"""flite (CMU Flite 2.2): 5 English voices, kal (8 kHz diphone), kal16, awb, rms, slt (16 kHz).

Called as ``flite -voice VOICE --setf duration_stretch=S -t TEXT -o out.wav``. ``awb_time`` is left
out: it speaks only clock times. Licence: BSD-style (CMU/Edinburgh Festvox licence), voices included.
"""

from __future__ import annotations

import shutil

import numpy as np

from training.tts.base import Voice, check_engine, synthesize_to_wav

NAME = "flite"
LICENCE = "BSD-style (Flite/Festvox licence, voices included)"
COMMAND = "flite"

VOICES: dict[str, tuple[str, ...]] = {"en": ("kal", "kal16", "awb", "rms", "slt")}
LANGUAGES = tuple(VOICES)


def available() -> bool:
    """Whether flite is installed."""
    return shutil.which(COMMAND) is not None


def voices(language: str) -> list[Voice]:
    """flite's voices for ``language`` (English only)."""
    return [Voice(NAME, language, name) for name in VOICES.get(language, ())]


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    check_engine(voice, NAME)
    stretch = f"duration_stretch={1.0 / max(speed, 0.1):.3f}"
    return synthesize_to_wav([COMMAND, "-voice", voice.name, "--setf", stretch, "-t", text, "-o", "{wav}"], sample_rate)
