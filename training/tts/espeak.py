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

NAME = "espeak"
LICENCE = "GPL-3.0-or-later (espeak-ng and its voice data)"
COMMAND = "espeak-ng"
DEFAULT_WPM = 175  # espeak-ng's own default speaking rate (words per minute)

# espeak-ng 1.51 base voices per language (``espeak-ng --voices=LANG``, mbrola voices excluded).
BASE_VOICES: dict[str, tuple[str, ...]] = {
    "en": (
        "en-us",
        "en",
        "en-gb-scotland",
        "en-gb-x-rp",
        "en-gb-x-gbclan",
        "en-gb-x-gbcwmd",
        "en-029",
        "en-us-nyc",
    ),
    "de": ("de",),
    "fr": ("fr", "fr-be", "fr-ch"),
    "es": ("es", "es-419"),
    "it": ("it",),
}
LANGUAGES = tuple(BASE_VOICES)

# The variants of espeak-ng-data/voices/!v (1.51), except "Mr serious" (a space in the name).
VARIANTS = (
    *(f"m{i}" for i in range(1, 9)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt", *(f"klatt{i}" for i in range(2, 7)),
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "croak", "david", "ed", "edward", "edward2", "fast", "grandma", "grandpa",
    "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "linda", "marcelo",
    "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "robosoft", *(f"robosoft{i}" for i in range(2, 9)), "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip


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
