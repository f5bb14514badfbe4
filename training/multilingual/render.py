"""Render a batch of plans: synthesize clean speech, augment it (babble from batch mates), write FLAC files.

All processing runs at ``WORK_RATE`` (22.05 kHz: every engine's output fits without loss of
band, and batch mates can be mixed without resampling each pair); the result is resampled to the
plan's stored rate, or goes through the phone channel at 8 kHz.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from training.multilingual import augment
from training.multilingual.plan import Plan
from training.signal_ops import colored_noise, db_to_gain, resample, trim_silence
from training.tts import SynthesisError, synthesize

log = logging.getLogger(__name__)
WORK_RATE = 22050


def clean_speech(plan: Plan) -> np.ndarray | None:
    """The engine's speech at ``WORK_RATE``, leading/trailing silence cut: ``(n,)``; None if it failed."""
    try:
        audio = synthesize(plan.sentence.spoken, plan.voice, WORK_RATE, speed=plan.engine_speed)
    except (SynthesisError, RuntimeError, ValueError, OSError) as error:
        log.warning("utterance %d: %s failed: %s", plan.number, plan.voice.id, error)
        return None
    audio = trim_silence(audio, WORK_RATE)
    if audio.size < WORK_RATE // 10 or not np.any(audio):
        log.warning("utterance %d: %s produced no speech", plan.number, plan.voice.id)
        return None
    return audio


def augmented(plan: Plan, speech: np.ndarray, mates: dict[int, np.ndarray]) -> np.ndarray:
    """``speech`` (``WORK_RATE``, ``(n,)``) through the plan's augmentations, at its stored rate: ``(m,)``."""
    rng = np.random.default_rng(plan.noise_seed)
    audio = speech
    if plan.speed is not None:
        audio = augment.speed(audio, WORK_RATE, plan.speed)
    if plan.tempo is not None:
        audio = augment.tempo(audio, WORK_RATE, plan.tempo)
    lead, trail = round(plan.lead_s * WORK_RATE), round(plan.trail_s * WORK_RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(trail, np.float32)])
    if plan.rt60 is not None:
        room = augment.room_impulse_response(WORK_RATE, plan.rt60, rng, plan.direct_db)
        audio = augment.reverberate(audio, room)
    present = [(mates[n], level, offset) for n, level, offset in plan.babble if n in mates]
    if present:
        others, levels, offsets = (list(column) for column in zip(*present, strict=True))
        audio = augment.babble(audio, others, levels, offsets)
    if plan.noise is not None:
        audio = augment.add_noise(audio, WORK_RATE, plan.noise, plan.snr_db, rng)
    audio = audio + colored_noise(len(audio), "white", rng, WORK_RATE) * db_to_gain(plan.floor_db)
    # The level is set before the channel: a codec quantizes quiet talkers more coarsely.
    audio = augment.set_level(audio, plan.level_db)
    if plan.telephone is not None:
        return augment.telephone(audio, WORK_RATE, plan.telephone)
    return np.clip(resample(audio, WORK_RATE, plan.sample_rate), -1.0, 1.0)


def manifest_row(plan: Plan, audio: np.ndarray, seed: int, split: str) -> dict:
    """The manifest line of a rendered utterance."""
    params: dict[str, object] = {"level_db": plan.level_db, "engine_speed": plan.engine_speed}
    if plan.speed is not None:
        params["speed"] = plan.speed
    if plan.tempo is not None:
        params["tempo"] = plan.tempo
    if plan.rt60 is not None:
        params.update(rt60=plan.rt60, direct_db=plan.direct_db)
    if plan.babble:
        params["babble"] = [list(mate) for mate in plan.babble]
    if plan.noise is not None:
        params.update(noise=plan.noise, snr_db=plan.snr_db)
    if plan.telephone is not None:
        params["g711"] = plan.telephone
    return {
        "audio": plan.audio_path,
        "text": plan.sentence.text,
        "language": plan.sentence.language,
        "engine": plan.voice.engine,
        "voice": plan.voice.id,
        "duration": round(len(audio) / plan.sample_rate, 4),
        "sample_rate": plan.sample_rate,
        "augment": plan.augmentations(),
        "augment_params": params,
        "spoken": plan.sentence.spoken,
        "source": plan.sentence.source,
        "split": split,
        "seed": seed,
        "index": plan.number,
    }


def render_batch(task: tuple[list[Plan], str, int, str]) -> list[dict]:
    """Worker: render and write one batch of plans; return the manifest rows of those that succeeded."""
    plans, out_dir, seed, split = task
    speech = {plan.number: clean_speech(plan) for plan in plans}
    mates = {number: audio for number, audio in speech.items() if audio is not None}
    rows = []
    for plan in plans:
        clean = mates.get(plan.number)
        if clean is None:
            continue
        others = {n: audio for n, audio in mates.items() if n != plan.number}
        audio = augmented(plan, clean, others)
        path = Path(out_dir) / plan.audio_path
        sf.write(str(path), audio, plan.sample_rate, subtype="PCM_16", format="FLAC")
        rows.append(manifest_row(plan, audio, seed, split))
    return rows
