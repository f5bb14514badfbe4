"""The multilingual data pipeline (training/multilingual): normalizer, text, voices, augmentations, a tiny run.

About 20 s; the end-to-end run uses the fast engines (espeak-ng, Pico) and is skipped where they
are not installed.
"""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import soundfile as sf

from training.multilingual import augment, g711
from training.multilingual.normalize import normalize, spell_numbers
from training.multilingual.plan import Planner
from training.multilingual.synth_multi import synthesize
from training.multilingual.text import LanguageText, heldout_texts, reserved
from training.multilingual.voices import voice_list
from training.voices import voice_pool

RATE = 16000


@pytest.mark.parametrize(
    ("language", "raw", "expected"),
    [
        ("en", "Don't call at 7:05, it's 21 dollars!", "don't call at seven oh five it's twenty one dollars"),
        (
            "de",
            "Wie geht's? Um 14:30 Uhr kostet die Straße 3 €.",
            "wie gehts um vierzehn uhr dreißig uhr kostet die straße drei euro",
        ),
        (
            "fr",
            "L'hôtel ouvre à 7h, d'accord ? C'est 80 %.",
            "l'hôtel ouvre à sept h d'accord c'est quatre vingts pour cent",
        ),
        ("es", "¿Cuánto cuesta? Son 15 €, señor.", "cuánto cuesta son quince euros señor"),
        ("it", "Un caffè, l'11 maggio, è già pronto!", "un caffè l'undici maggio è già pronto"),
        ("de", "Ein Café in Málaga", "ein cafe in malaga"),  # another language's accents are folded
    ],
)
def test_normalize_per_language(language: str, raw: str, expected: str) -> None:
    assert normalize(raw, language) == expected
    assert normalize(expected, language) == expected  # idempotent


def test_spell_numbers_keeps_punctuation_for_the_engine() -> None:
    assert spell_numbers("Il est 14:30, ça fait 12,50 €.", "fr") == (
        "Il est quatorze heures trente, ça fait douze virgule cinquante euros."
    )


@pytest.mark.parametrize("language", ["en", "de", "fr", "es", "it"])
def test_text_is_deterministic_and_never_held_out(language: str) -> None:
    texts = LanguageText(language)
    first = [texts.sample(random.Random(f"t{i}")).text for i in range(60)]
    again = [texts.sample(random.Random(f"t{i}")).text for i in range(60)]
    assert first == again
    assert len(set(first)) > 45  # varied
    held = reserved(language)
    assert not held.intersection(first)


def test_held_out_sentences_are_rejected_and_sets_are_large() -> None:
    for language in ("de", "fr", "es", "it"):
        assert len(heldout_texts(language)) >= 100
        texts = LanguageText(language)
        for sentence in heldout_texts(language)[:10]:
            text = normalize(sentence, language)
            assert not texts.accepts(text)
            assert not texts.accepts(f"ja {text} oui")  # containing one is rejected too


def test_voice_splits_are_disjoint_and_english_espeak_reuses_the_old_split() -> None:
    assert [voice.name for voice in voice_list("espeak", "en", "train")] == list(voice_pool("train"))
    for engine, language in [("espeak", "de"), ("espeak", "fr"), ("mbrola", "de"), ("rhvoice", "en"), ("flite", "en")]:
        train, heldout = set(voice_list(engine, language, "train")), set(voice_list(engine, language, "heldout"))
        assert train and heldout and not train & heldout
    assert not voice_list("piper", "en", "train") and voice_list("piper", "en", "heldout")


def test_plans_are_a_function_of_the_seed() -> None:
    languages = ("en", "de", "fr", "es", "it")
    one = [Planner(5, "train", 40, languages).plan(n) for n in range(1, 41)]
    two = [Planner(5, "train", 40, languages).plan(n) for n in range(1, 41)]
    other = [Planner(6, "train", 40, languages).plan(n) for n in range(1, 41)]
    assert one == two and one != other
    assert all(plan.voice.engine != "piper" for plan in one)
    assert {plan.sentence.language for plan in one} == set(languages)


def _speech(seconds: float = 1.0) -> np.ndarray:
    """A voiced-like test signal: harmonics of 150 Hz up to 7 kHz, amplitude-modulated, float32 ``(n,)``."""
    t = np.arange(int(RATE * seconds)) / RATE
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 47))
    return (0.1 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _band_energy(audio: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequencies = np.fft.rfftfreq(len(audio), 1.0 / rate)
    return float(spectrum[(frequencies >= low) & (frequencies < high)].sum() / spectrum.sum())


def test_telephone_band_keeps_300_to_3400_hz_at_8_khz() -> None:
    speech = _speech()
    assert _band_energy(speech, RATE, 3600, 8000) > 0.01
    phone = augment.telephone(speech, RATE, "mulaw")
    assert len(phone) == len(speech) // 2  # stored at 8 kHz
    wideband = augment.resample(phone, 8000, RATE)
    assert _band_energy(wideband, RATE, 3700, 8000) < 1e-3
    assert _band_energy(wideband, RATE, 0, 250) < 0.01


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_round_trip_error_is_small(law: str) -> None:
    speech = _speech()
    back = g711.roundtrip(speech, law)
    snr = 10 * np.log10(np.sum(speech**2) / np.sum((speech - back) ** 2))
    assert 30 < snr < 45  # 8-bit companding: about 37 dB, not lossless
    codes = np.arange(256, dtype=np.uint8)
    encode = g711.mulaw_encode if law == "mulaw" else g711.alaw_encode
    assert (encode(g711.decode(codes, law) * 32768 / 32767) == codes).mean() > 0.99  # inverse of the decoder


def test_reverb_lengthens_the_tail_by_the_rt60() -> None:
    speech = _speech(0.5)
    room = augment.room_impulse_response(RATE, 0.6, np.random.default_rng(0), direct_db=0.0)
    wet = augment.reverberate(speech, room)
    assert len(wet) == len(speech) + len(room) - 1
    tail = wet[len(speech) : len(speech) + RATE // 10]
    assert augment.rms(tail) > 0.05 * augment.rms(speech)  # rings on after the speech stopped
    late = wet[len(speech) + int(0.6 * RATE) :]
    assert augment.rms(late) < 0.01 * augment.rms(speech)  # and has died down 60 dB after rt60


def test_noise_babble_gain_speed_and_tempo() -> None:
    speech = _speech()
    noisy = augment.add_noise(speech, RATE, "pink", 10.0, np.random.default_rng(1))
    snr = 10 * np.log10(np.sum(speech**2) / np.sum((noisy - speech) ** 2))
    assert abs(snr - 10.0) < 0.5
    other = _speech(0.4)[::-1].copy()
    mixed = augment.babble(speech, [other], [20.0], [0.25])
    assert np.allclose(mixed[: RATE // 4], speech[: RATE // 4])  # starts at its offset
    added = 10 * np.log10(np.sum(speech[RATE // 4 :] ** 2) / np.sum((mixed - speech)[RATE // 4 :] ** 2))
    assert abs(added - 20.0) < 1.5
    assert abs(augment.rms(augment.set_level(speech, -30.0)) - 10 ** (-30 / 20)) < 1e-4
    assert abs(len(augment.speed(speech, RATE, 1.25)) - RATE / 1.25) < 2
    slower = augment.tempo(speech, RATE, 0.8)
    assert abs(len(slower) - RATE / 0.8) < RATE * 0.02
    crossings = lambda a: np.mean(np.abs(np.diff(np.sign(a))) > 0)  # noqa: E731
    assert abs(crossings(slower) / crossings(speech) - 1) < 0.05  # tempo keeps the pitch


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("pico2wave")), reason="espeak-ng/pico missing")
def test_tiny_end_to_end_run_writes_a_readable_manifest_and_resumes(tmp_path) -> None:
    out = tmp_path / "multi"
    manifest = synthesize(out, 10, 3, "train", ("de", "es"), ("espeak", "pico"), progress=False)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10
    assert {row["language"] for row in rows} <= {"de", "es"} and {row["engine"] for row in rows} <= {"espeak", "pico"}
    for row in rows:
        assert set(row) >= {"audio", "text", "language", "engine", "voice", "augment", "sample_rate"}
        audio, rate = sf.read(str(out / row["audio"]), dtype="float32")
        assert rate == row["sample_rate"] in (8000, 16000, 22050, 44100)
        assert abs(len(audio) / rate - row["duration"]) < 1e-3 and np.abs(audio).max() > 0.001
        assert normalize(row["text"], row["language"]) == row["text"]
    before = manifest.read_text(encoding="utf-8")
    synthesize(out, 10, 3, "train", ("de", "es"), ("espeak", "pico"), progress=False)  # nothing left to do
    assert manifest.read_text(encoding="utf-8") == before
