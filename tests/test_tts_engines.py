"""Each synthesis engine of training/tts produces plausible speech in each of its languages.

Needs the engines installed (``training/tts/install-engines.sh``, run by ``make system-deps`` and
.ci/run; Piper and Kokoro come with the ``train`` extra). About 20 s: one short sentence per
engine and language.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from training.tts import (
    ENGINES,
    LANGUAGES,
    Voice,
    available_engines,
    kokoro,
    kokoro_model,
    kokoro_phonemes,
    mbrola,
    synthesize,
    voices,
)

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "training" / "tts" / "install-engines.sh"
SENTENCES = {
    "en": "please call me back tomorrow morning",
    "de": "bitte rufen Sie mich morgen früh zurück",
    "fr": "rappelez-moi demain matin s'il vous plaît",
    "es": "por favor llámame mañana por la mañana",
    "it": "per favore richiamami domani mattina",
}
# Voices per engine and language on a machine with every engine installed.
EXPECTED_COUNTS = {
    "espeak": {"en": 808, "de": 101, "fr": 303, "es": 202, "it": 101},
    "mbrola": {"en": 4, "de": 7, "fr": 7},
    "pico": {"en": 2, "de": 1, "fr": 1, "es": 1, "it": 1},
    "rhvoice": {"en": 6},
    "flite": {"en": 5},
    "piper": {"en": 1},
    "kokoro": {language: 5 for language in LANGUAGES},
}
CASES = [(name, language) for name, counts in EXPECTED_COUNTS.items() for language in counts]


def test_every_engine_is_installed() -> None:
    assert available_engines() == list(ENGINES), f"missing engines: run {INSTALL}"


@pytest.mark.parametrize(("engine", "language"), CASES)
def test_inventory(engine: str, language: str) -> None:
    found = voices(language, engines=[engine])
    assert len(found) == EXPECTED_COUNTS[engine][language]
    assert len(set(found)) == len(found)
    assert all(voice.engine == engine and voice.language == language for voice in found)


def test_broken_mbrola_voices_are_left_out() -> None:
    names = {voice.name for language in LANGUAGES for voice in mbrola.voices(language, accented=True)}
    assert not names & set(mbrola.BROKEN)
    assert {"mb-de1-en", "mb-fr4-en"} <= names  # accented English only on request
    assert "mb-de1-en" not in {voice.name for voice in mbrola.voices("en")}


def _check_speech(audio: np.ndarray, sample_rate: int, text: str) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    duration = len(audio) / sample_rate
    words = len(text.split())
    # A short sentence spoken at 1-5 words per second, with the engines' own leading/trailing silence.
    assert 0.2 * words <= duration <= 1.2 * words + 1.5, duration
    assert float(np.abs(audio).max()) <= 1.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 0.01, rms
    # Speech, not a constant tone or noise: loudness varies between 50 ms frames (pauses, syllables).
    frame = sample_rate // 20
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    frame_rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    assert frame_rms.max() > 4 * np.percentile(frame_rms, 10) + 1e-4


@pytest.mark.parametrize(("engine", "language"), CASES)
def test_engine_speaks(engine: str, language: str) -> None:
    voice = voices(language, engines=[engine])[0]
    text = SENTENCES[language]
    audio = synthesize(text, voice, 16000)
    _check_speech(audio, 16000, text)


# Every voice of the small engines (the first voice of each language is covered above).
SMALL_ENGINE_VOICES = [
    voice
    for engine in ("mbrola", "pico", "rhvoice", "flite")
    for language in EXPECTED_COUNTS[engine]
    for voice in voices(language, engines=[engine])[1:]
]


@pytest.mark.parametrize("voice", SMALL_ENGINE_VOICES, ids=lambda voice: voice.id)
def test_every_voice_of_the_small_engines_speaks(voice: Voice) -> None:
    text = SENTENCES[voice.language]
    _check_speech(synthesize(text, voice, 16000), 16000, text)


@pytest.mark.parametrize("voice", [Voice("espeak", "en", "en-us+f2"), Voice("pico", "en", "en-GB")])
def test_output_rate_and_speed(voice: Voice) -> None:
    text = SENTENCES["en"]
    at_16k = synthesize(text, voice, 16000)
    at_8k = synthesize(text, voice, 8000)
    # Same deterministic engine, same text: the 8 kHz output is the 16 kHz one at half the samples.
    assert abs(len(at_8k) * 2 - len(at_16k)) <= 4
    faster = synthesize(text, voice, 16000, speed=1.5)
    assert len(faster) < 0.85 * len(at_16k)


def test_kokoro_blends_and_random_voices() -> None:
    packs = kokoro_model.packs()
    assert set(packs) == set(kokoro_model.PACKS)
    assert all(pack.shape == (kokoro_model.MAX_TOKENS, kokoro_model.STYLE_DIM) for pack in packs.values())
    half = kokoro.style_of("jf_alpha:1+jm_kumo:1")
    np.testing.assert_allclose(half, 0.5 * packs["jf_alpha"] + 0.5 * packs["jm_kumo"], rtol=1e-6)
    split = kokoro.style_of("jm_kumo|jf_nezumi")
    np.testing.assert_array_equal(split[:, :128], packs["jm_kumo"][:, :128])
    np.testing.assert_array_equal(split[:, 128:], packs["jf_nezumi"][:, 128:])
    with pytest.raises(ValueError, match="unknown Kokoro voice pack"):
        kokoro.style_of("af_heart")
    voice = kokoro.random_voice(random.Random(3), "it")
    assert voice == kokoro.random_voice(random.Random(3), "it")  # a function of the generator alone
    assert abs(sum(kokoro.parse_blend(voice.name.split("|")[0]).values()) - 1) < 1e-9
    text = SENTENCES["it"]
    _check_speech(synthesize(text, voice, 16000), 16000, text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_kokoro_phonemes_fit_the_vocabulary(language: str) -> None:
    phonemes = kokoro_phonemes.phonemize(SENTENCES[language] + ", ok?", language)
    assert "^" not in phonemes and "(" not in phonemes
    assert kokoro_phonemes.unknown_symbols(phonemes, kokoro_model.vocab()) <= {"-"}
    assert phonemes.rstrip().endswith("?")  # punctuation goes back after each clause


DEB822 = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
"""
ONE_LINE = """deb http://deb.debian.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main contrib
# deb http://deb.debian.org/debian bookworm main
deb http://archive.ubuntu.com/ubuntu jammy main restricted
"""


@pytest.mark.skipif(shutil.which("awk") is None, reason="needs awk")
def test_install_script_enables_contrib_and_non_free(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text(ONE_LINE)
    results = []
    for _ in range(2):  # the second run must change nothing
        subprocess.run(
            ["bash", str(INSTALL)], env={"APT_SOURCES_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True
        )
        results.append(
            ((tmp_path / "sources.list.d" / "debian.sources").read_text(), (tmp_path / "sources.list").read_text())
        )
    assert results[0] == results[1]
    deb822, one_line = results[0]
    assert deb822.split("\n\n")[0].splitlines()[3] == "Components: main contrib non-free"
    assert deb822.split("\n\n")[1].splitlines()[3] == "Components: main"  # not a Debian archive
    assert one_line.splitlines() == [
        "deb http://deb.debian.org/debian bookworm main contrib non-free",
        "deb http://security.debian.org/debian-security bookworm-security main contrib non-free",
        "# deb http://deb.debian.org/debian bookworm main",
        "deb http://archive.ubuntu.com/ubuntu jammy main restricted universe multiverse",
    ]
