"""SVOX Pico (``pico2wave``): one voice per language, en-US, en-GB, de-DE, fr-FR, es-ES, it-IT.

Called as ``pico2wave -l LANG -w out.wav TEXT`` (it writes only to a file whose name ends in
``.wav``); 16 kHz output. The speaking rate is set with Pico's own markup,
``<speed level="P">...</speed>`` (P percent). Licence: the program and the lingware are Apache-2.0
by their headers, but Debian ships them in non-free because the lingware's sources (the
recordings and tools that built it) are not available.
"""

from __future__ import annotations

import shutil

import numpy as np

from training.tts.base import Voice, check_engine, synthesize_to_wav

NAME = "pico"
LICENCE = "Apache-2.0 (Debian non-free: lingware without its sources)"
COMMAND = "pico2wave"

VOICES: dict[str, tuple[str, ...]] = {
    "en": ("en-US", "en-GB"),
    "de": ("de-DE",),
    "fr": ("fr-FR",),
    "es": ("es-ES",),
    "it": ("it-IT",),
}
LANGUAGES = tuple(VOICES)


def available() -> bool:
    """Whether pico2wave is installed."""
    return shutil.which(COMMAND) is not None


def voices(language: str) -> list[Voice]:
    """Pico's voices for ``language`` (one per locale)."""
    return [Voice(NAME, language, name) for name in VOICES.get(language, ())]


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    check_engine(voice, NAME)
    # Pico reads its markup in the text; "<" and ">" in a transcript would be taken as tags.
    clean = text.replace("<", " ").replace(">", " ")
    if abs(speed - 1.0) > 1e-3:
        clean = f'<speed level="{round(100 * speed)}">{clean}</speed>'
    return synthesize_to_wav([COMMAND, "-l", voice.name, "-w", "{wav}", "--", clean], sample_rate)
