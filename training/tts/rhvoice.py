"""RHVoice (statistical parametric, HTS): 6 English voices, alan, bdl, clb, evgeniy-eng, lyubov, slt.

Called as ``RHVoice-test -p VOICE -r RATE -o out.wav`` with the text on stdin; 24 kHz output.
Licences (/usr/share/doc/rhvoice-english/copyright): RHVoice and the voices alan, bdl, clb, slt
(trained on the CMU ARCTIC recordings) are LGPL-2.1+; evgeniy-eng and lyubov are CC-BY-NC-ND-4.0
(non-commercial). Debian ships the voices in non-free because they are trained models whose
training scripts are not included.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from training.tts.base import Voice, synthesize_to_wav

NAME = "rhvoice"
LICENCE = "LGPL-2.1+; voices evgeniy-eng and lyubov CC-BY-NC-ND-4.0 (Debian non-free)"
COMMAND = "RHVoice-test"
VOICE_DIR = Path("/usr/share/RHVoice/voices")

VOICES: dict[str, tuple[str, ...]] = {"en": ("alan", "bdl", "clb", "evgeniy-eng", "lyubov", "slt")}
LANGUAGES = tuple(VOICES)


def available() -> bool:
    """Whether RHVoice-test is installed."""
    return shutil.which(COMMAND) is not None


def voices(language: str) -> list[Voice]:
    """RHVoice's installed voices for ``language``."""
    return [Voice(NAME, language, name) for name in VOICES.get(language, ()) if (VOICE_DIR / name).is_dir()]


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    if voice.engine != NAME:
        raise ValueError(f"not an {NAME} voice: {voice}")
    rate = str(max(20, min(300, round(100 * speed))))  # percent of the voice's normal rate
    return synthesize_to_wav([COMMAND, "-p", voice.name, "-r", rate, "-o", "{wav}"], sample_rate, stdin=text + "\n")
