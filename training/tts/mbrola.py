"""mbrola diphone voices driven by espeak-ng (``espeak-ng -v mb-de3``): 4 English, 7 German, 7 French.

espeak-ng does the text analysis and prosody, mbrola concatenates recorded diphones, so these sound
far more natural than espeak-ng's own formant voices. Output at the voice's rate (16 or 22.05 kHz).

Excluded because they are broken with espeak-ng 1.51 (checked here on a few sentences per voice:
mbrola reports "unknown diphone, replaced with silence" for every stressed vowel or affricate
espeak-ng's phoneme tables hand it, so words lose their vowels):

- Spanish ``mb-es1`` .. ``mb-es4`` (21-40 unknown diphones in three sentences) and the Mexican
  ``mb-mx1``/``mb-mx2`` (espeak-ng asks for voice files ``mx1``/``mx2`` that no package ships);
- Italian ``mb-it1`` .. ``mb-it4`` (7-16 unknown diphones in three sentences);
- German-Bavarian ``mb-de8`` (7 unknown diphones in three sentences; not in the recipe's packages).

espeak-ng also has English spoken with the German and French diphone sets (``mb-de1-en`` ...
``mb-fr4-en``): accented English, no unknown diphones; listed in ``ACCENTED_ENGLISH`` and only
returned by ``voices("en", accented=True)``.

Licences: mbrola (the program) is AGPL-3.0; the voices are non-free (Debian non-free), free of
charge for non-commercial, non-military use, and some only for research; see
``docs/voices-and-licences.md`` for each voice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from training.tts import espeak
from training.tts.base import Voice, finish

NAME = "mbrola"
LICENCE = "mbrola AGPL-3.0; voices non-free (non-commercial / research use, per voice)"
VOICE_DIR = Path("/usr/share/mbrola")

VOICES: dict[str, tuple[str, ...]] = {
    "en": ("mb-us1", "mb-us2", "mb-us3", "mb-en1"),
    "de": tuple(f"mb-de{i}" for i in range(1, 8)),
    "fr": tuple(f"mb-fr{i}" for i in range(1, 8)),
}
LANGUAGES = tuple(VOICES)
ACCENTED_ENGLISH = (*(f"mb-de{i}-en" for i in range(1, 7)), "mb-fr1-en", "mb-fr4-en")
BROKEN = (*(f"mb-es{i}" for i in range(1, 5)), "mb-mx1", "mb-mx2", *(f"mb-it{i}" for i in range(1, 5)), "mb-de8")


def _database(voice_name: str) -> Path:
    """The mbrola database file a voice needs: ``mb-de3`` and ``mb-de3-en`` -> /usr/share/mbrola/de3."""
    code = voice_name.removeprefix("mb-").split("-", 1)[0]
    return VOICE_DIR / code / code


def available() -> bool:
    """Whether espeak-ng and the mbrola program are installed (each voice is checked by ``voices``)."""
    return espeak.available() and shutil.which("mbrola") is not None


def voices(language: str, accented: bool = False) -> list[Voice]:
    """The installed, working mbrola voices of ``language`` (``accented``: add accented English)."""
    names = list(VOICES.get(language, ()))
    if accented and language == "en":
        names.extend(ACCENTED_ENGLISH)
    return [Voice(NAME, language, name) for name in names if _database(name).exists()]


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    if voice.engine != NAME:
        raise ValueError(f"not an {NAME} voice: {voice}")
    audio, native_rate = espeak.run(text, voice.name, speed)
    return finish(audio, native_rate, sample_rate)
