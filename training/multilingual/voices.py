"""Which engine and voice speaks an utterance: deterministic train / held-out voice splits per engine.

- ``piper``: held out entirely (our cross-engine check), English only.
- ``espeak``: English reuses ``training.voices.voice_pool`` (the English model's split); the
  other languages apply the same rule (``HELDOUT_ONLY_VARIANTS`` plus a stable hash share of the
  base+variant pairs; bare base voices are training voices).
- ``mbrola``, ``rhvoice``, ``flite``: the voices of ``HELDOUT_VOICES`` are held out, the rest train.
- ``pico``: one voice per locale, all in train (nothing to hold out without losing the engine).
- ``kokoro``: train draws the pure packs and blends from one seed stream, held-out draws blends
  from another (``random_voice`` with a different purpose string), so held-out blends are new.

The engine of an utterance is drawn by ``ENGINE_WEIGHTS`` over the engines its language and split
have; Kokoro (about 2.5 s of audio per CPU second, ten times slower than the others) gets a fixed
``KOKORO_SHARE`` of each language wherever it is available.
"""

from __future__ import annotations

import random
from functools import lru_cache

from training.tts import espeak as espeak_engine
from training.tts import kokoro, registry
from training.tts.base import Voice
from training.voices import HELDOUT_ONLY_VARIANTS, SPLITS, Split, _pair_is_heldout, voice_pool

HELDOUT_VOICES: dict[str, frozenset[str]] = {
    "mbrola": frozenset({"mb-us2", "mb-de5", "mb-de7", "mb-fr4", "mb-fr7"}),
    "rhvoice": frozenset({"clb"}),  # clb is not a flite voice (flite's slt is rhvoice's slt speaker)
    "flite": frozenset({"rms"}),
}
TRAIN_ENGINES = ("espeak", "mbrola", "pico", "rhvoice", "flite", "kokoro")
HELDOUT_ENGINES = ("espeak", "mbrola", "rhvoice", "flite", "kokoro", "piper")
# Relative weights of the fast engines within a language (renormalised over those it has).
ENGINE_WEIGHTS = {"espeak": 0.35, "mbrola": 0.25, "pico": 0.2, "rhvoice": 0.12, "flite": 0.08, "piper": 0.3}
KOKORO_SHARE = 0.15


def check_split(split: str) -> Split:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return split  # type: ignore[return-value]


def _espeak_names(language: str, split: Split) -> list[str]:
    if language == "en":
        return list(voice_pool(split))
    names = list(espeak_engine.BASE_VOICES[language]) if split == "train" else []
    for base in espeak_engine.BASE_VOICES[language]:
        for variant in espeak_engine.VARIANTS:
            heldout = variant in HELDOUT_ONLY_VARIANTS or _pair_is_heldout(base, variant)
            if heldout == (split == "heldout"):
                names.append(f"{base}+{variant}")
    return names


@lru_cache(maxsize=128)
def voice_list(engine: str, language: str, split: Split) -> tuple[Voice, ...]:
    """The fixed voices of ``engine`` for ``language`` in ``split`` (Kokoro: its pure packs, train only)."""
    check_split(split)
    if engine == "espeak":
        return tuple(Voice(engine, language, name) for name in _espeak_names(language, split))
    if engine == "piper":
        return tuple(registry.engine(engine).voices(language)) if split == "heldout" else ()
    if engine == "kokoro":
        return tuple(kokoro.voices(language)) if split == "train" else ()
    held = HELDOUT_VOICES.get(engine, frozenset())
    inventory = registry.engine(engine).voices(language)
    return tuple(voice for voice in inventory if (voice.name in held) == (split == "heldout"))


def engines_for(language: str, split: Split, allowed: tuple[str, ...] | None = None) -> list[str]:
    """Engines that have a ``split`` voice for ``language``, are installed, and are in ``allowed``."""
    pool = TRAIN_ENGINES if check_split(split) == "train" else HELDOUT_ENGINES
    installed = set(registry.available_engines())
    chosen = [name for name in pool if name in installed and (allowed is None or name in allowed)]
    # Kokoro's held-out voices are drawn blends, not a fixed list.
    return [n for n in chosen if (n == "kokoro" and language in kokoro.LANGUAGES) or voice_list(n, language, split)]


def engine_weights(engines: list[str]) -> list[float]:
    """Weights of ``engines`` (summing to 1): Kokoro ``KOKORO_SHARE``, the others by ``ENGINE_WEIGHTS``."""
    fast = [name for name in engines if name != "kokoro"]
    if not fast:
        return [1.0 / len(engines)] * len(engines)
    kokoro_share = KOKORO_SHARE if "kokoro" in engines else 0.0
    total = sum(ENGINE_WEIGHTS[name] for name in fast)
    return [kokoro_share if name == "kokoro" else (1 - kokoro_share) * ENGINE_WEIGHTS[name] / total for name in engines]


def draw_voice(rng: random.Random, language: str, split: Split, engines: list[str]) -> Voice:
    """An engine by weight, then a voice of it for ``language`` in ``split``.

    Kokoro: in train a pure pack a quarter of the time, else a blend from ``rng``; in held-out a
    blend from a generator seeded off ``rng`` with its own purpose, a stream train never uses.
    """
    (engine,) = rng.choices(engines, weights=engine_weights(engines))
    if engine == "kokoro":
        if split == "train":
            packs = voice_list(engine, language, split)
            return rng.choice(packs) if rng.random() < 0.25 else kokoro.random_voice(rng, language)
        return kokoro.random_voice(random.Random(f"kokoro-heldout-{rng.getrandbits(64)}"), language)
    return rng.choice(voice_list(engine, language, split))
