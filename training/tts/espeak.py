"""espeak-ng (formant synthesis): every base voice of the five languages times its voice variants.

Called as ``espeak-ng -v VOICE[+VARIANT] -s WPM -w out.wav TEXT``; 22.05 kHz output. A variant
(``+m3``, ``+f2``, ``+klatt4``, ...) changes the timbre and pitch of any base voice, so the
inventory is base voices x (no variant + 100 variants): 8 x 101 English, 1 x 101 German,
3 x 101 French, 2 x 101 Spanish, 1 x 101 Italian. Licence: GPL-3.0-or-later (program and voice data).
"""

from __future__ import annotations

import shutil

import numpy as np

from training.tts.base import SynthesisError, Voice, finish, run_to_wav
from training.voices import BASE_VOICES as ENGLISH_BASE_VOICES
from training.voices import VARIANTS

NAME = "espeak"
LICENCE = "GPL-3.0-or-later (espeak-ng and its voice data)"
COMMAND = "espeak-ng"
DEFAULT_WPM = 175  # espeak-ng's own default speaking rate (words per minute)

# espeak-ng 1.51 base voices per language (``espeak-ng --voices=LANG``, mbrola voices excluded); English's
# and the variants (``VARIANTS``) are the English model's, from ``training.voices``.
BASE_VOICES: dict[str, tuple[str, ...]] = {
    "en": ENGLISH_BASE_VOICES,
    "de": ("de",),
    "fr": ("fr", "fr-be", "fr-ch"),
    "es": ("es", "es-419"),
    "it": ("it",),
}
LANGUAGES = tuple(BASE_VOICES)


def available() -> bool:
    """Whether espeak-ng is installed."""
    return shutil.which(COMMAND) is not None


def voices(language: str) -> list[Voice]:
    """Every ``base`` and ``base+variant`` voice of ``language`` (empty for other languages)."""
    names: list[str] = []
    for base in BASE_VOICES.get(language, ()):
        names.append(base)
        names.extend(f"{base}+{variant}" for variant in VARIANTS)
    return [Voice(NAME, language, name) for name in names]


def run(text: str, espeak_voice: str, speed: float = 1.0) -> tuple[np.ndarray, int]:
    """One espeak-ng process for ``text`` with voice ``espeak_voice``: (float32 samples, native rate).

    Shared with the mbrola engine, which is espeak-ng driving an mbrola diphone voice.
    """
    wpm = str(max(80, min(450, round(DEFAULT_WPM * speed))))  # espeak-ng accepts 80..450
    # "--" so a text starting with "-" is never read as an option.
    return run_to_wav([COMMAND, "-v", espeak_voice, "-s", wpm, "-w", "{wav}", "--", text])


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    if voice.engine != NAME:
        raise ValueError(f"not an {NAME} voice: {voice}")
    try:
        audio, native_rate = run(text, voice.name, speed)
    except SynthesisError:
        if "+" not in voice.name:
            raise
        # espeak-ng 1.51 occasionally crashes (SIGSEGV) on a variant/text pair: retry the base voice.
        audio, native_rate = run(text, voice.name.split("+", 1)[0], speed)
    return finish(audio, native_rate, sample_rate)
