"""One utterance of a synthetic data set: its drawn parameters (the plan), its audio, its manifest row.

Plans are drawn in the parent process from a generator seeded by (seed, utterance number), and
rendered in worker processes, so a data set is a function of its seed whatever the worker count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from training.espeak import run_espeak
from training.signal_ops import (
    colored_noise,
    db_to_gain,
    mulaw_roundtrip,
    resample,
    rms,
    telephone_band,
    to_pcm16,
    trim_silence,
)
from training.voices import Split

log = logging.getLogger(__name__)

LANGUAGE = "en"

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
SAMPLE_RATE_WEIGHTS = (0.12, 0.55, 0.08, 0.08, 0.08, 0.09)
NOISE_TYPES = ("none", "white", "pink", "brown")
NOISE_WEIGHTS = (0.25, 0.25, 0.30, 0.20)

# A sentence starting with one of these is spoken with a question mark (rising intonation).
# fmt: off
_QUESTION_STARTERS = frozenset((
    "what", "where", "when", "why", "who", "whose", "which", "how", "can", "could", "would",
    "will", "do", "does", "did", "is", "are", "was", "were", "have", "has", "should", "shall",
    "may", "am",
))
# fmt: on


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything needed to render one utterance; drawn in the parent, rendered in a worker."""

    number: int
    text: str
    source: str
    spoken: str  # what espeak reads: the text plus end punctuation for intonation
    voice: str
    rate: int
    pitch: int
    pitch_range: int | None
    word_gap: int
    sample_rate: int
    level_db: float  # speech RMS, dBFS
    noise: str
    snr_db: float | None
    floor_db: float  # noise floor RMS under everything, dBFS
    lead_s: float
    trail_s: float
    mulaw: bool
    noise_seed: int

    @property
    def audio_path(self) -> str:
        return f"audio/{self.number:07d}.wav"


def utterance_rng(seed: int, number: int, purpose: str) -> random.Random:
    """An independent generator per (seed, utterance, purpose), stable across processes."""
    digest = hashlib.blake2b(f"{seed}:{number}:{purpose}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _spoken_text(text: str, rng: random.Random) -> str:
    """Add end punctuation so espeak varies intonation (questions rise); the reference has none."""
    first = text.split(" ", 1)[0]
    if first in _QUESTION_STARTERS and rng.random() < 0.85:
        return text + "?"
    return text + "." if rng.random() < 0.5 else text


def plan_utterance(
    seed: int, number: int, split: Split, text: str, source: str, voices: Sequence[str]
) -> UtteranceSpec:
    """Draw the synthesis parameters of utterance ``number`` from its own generator."""
    rng = utterance_rng(seed, number, f"audio-{split}")
    (noise,) = rng.choices(NOISE_TYPES, weights=NOISE_WEIGHTS)
    (sample_rate,) = rng.choices(SAMPLE_RATES, weights=SAMPLE_RATE_WEIGHTS)
    return UtteranceSpec(
        number=number,
        text=text,
        source=source,
        spoken=_spoken_text(text, rng),
        voice=rng.choice(voices),
        rate=rng.randint(120, 220),
        pitch=rng.randint(20, 80),
        pitch_range=rng.randint(30, 180) if rng.random() < 0.5 else None,
        word_gap=rng.randint(1, 6) if rng.random() < 0.2 else 0,
        sample_rate=sample_rate,
        level_db=round(rng.uniform(-36.0, -14.0), 2),
        noise=noise,
        snr_db=None if noise == "none" else round(rng.uniform(5.0, 40.0), 2),
        floor_db=round(rng.uniform(-85.0, -60.0), 2),
        lead_s=round(rng.uniform(0.0, 0.8), 3),
        trail_s=round(rng.uniform(0.0, 0.8), 3),
        mulaw=sample_rate == 8000 and rng.random() < 0.5,
        noise_seed=rng.getrandbits(63),
    )


def render_utterance(spec: UtteranceSpec) -> np.ndarray:
    """The utterance's samples (float32 in [-1, 1]) at ``spec.sample_rate``."""
    prosody = (spec.rate, spec.pitch, spec.word_gap, spec.pitch_range)
    try:
        speech, native_rate = run_espeak(spec.spoken, spec.voice, *prosody)
    except RuntimeError:
        # espeak-ng 1.51 occasionally crashes (SIGSEGV) on a variant/text pair; the base voice
        # of the same accent works, and the fallback keeps the data set deterministic.
        base_voice = spec.voice.split("+")[0]
        speech, native_rate = run_espeak(spec.spoken, base_voice, *prosody)
    speech = resample(trim_silence(speech, native_rate), native_rate, spec.sample_rate)
    speech *= db_to_gain(spec.level_db) / max(rms(speech), 1e-9)
    speech_rms = rms(speech)

    lead = round(spec.lead_s * spec.sample_rate)
    trail = round(spec.trail_s * spec.sample_rate)
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])

    noise_rng = np.random.default_rng(spec.noise_seed)
    if spec.snr_db is not None:
        noise = colored_noise(len(audio), spec.noise, noise_rng, spec.sample_rate)
        audio += noise * (speech_rms / db_to_gain(spec.snr_db))
    if spec.sample_rate == 8000:  # the channel filters speech and noise alike
        audio = telephone_band(audio, spec.sample_rate)
    # A microphone never records digital silence: a faint white floor under everything.
    audio += colored_noise(len(audio), "white", noise_rng, spec.sample_rate) * db_to_gain(spec.floor_db)
    if spec.mulaw:
        audio = mulaw_roundtrip(audio)
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:  # scale the whole mix (not clip) so the SNR stays as drawn
        audio *= 0.99 / peak
    return audio.astype(np.float32)


def render_task(task: tuple[UtteranceSpec, str, str, int]) -> dict | None:
    """Worker: render one utterance, write its WAV, return its manifest line (None: espeak-ng failed).

    ``render_utterance`` already retries a crashed variant with its base voice; should that
    fail too, one utterance must not end a 30,000-utterance run.
    """
    spec, out_dir, split, seed = task
    try:
        audio = render_utterance(spec)
    except RuntimeError as error:
        log.warning("skipped utterance %d: %s", spec.number, error)
        return None
    sf.write(os.path.join(out_dir, spec.audio_path), to_pcm16(audio), spec.sample_rate, subtype="PCM_16")
    return {
        "audio": spec.audio_path,
        "text": spec.text,
        "language": LANGUAGE,
        "duration": round(len(audio) / spec.sample_rate, 4),
        "voice": spec.voice,
        "sample_rate": spec.sample_rate,
        "rate": spec.rate,
        "pitch": spec.pitch,
        "pitch_range": spec.pitch_range,
        "word_gap": spec.word_gap,
        "level_db": spec.level_db,
        "noise": spec.noise,
        "snr_db": spec.snr_db,
        "floor_db": spec.floor_db,
        "lead_s": spec.lead_s,
        "trail_s": spec.trail_s,
        "mulaw": spec.mulaw,
        "source": spec.source,
        "split": split,
        "seed": seed,
        "index": spec.number,
    }
