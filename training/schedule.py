"""What ``asr-train fit`` feeds the optimizer, step by step: batches (short-first curriculum) and the learning rate."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from training.batching import bucketed_batches
from training.trainer_state import TrainerInfo


def training_batches(
    lengths: list[int],
    max_batch_frames: int,
    short_first_steps: int,
    short_first_frames: int,
    rng: random.Random,
    info: TrainerInfo,
) -> Iterator[list[int]]:
    """Endless batches of utterance indices, counting epochs in ``info["epoch"]``.

    ``lengths``: fbank frames per utterance. Short-first curriculum (SortaGrad, Amodei et al.
    2016): until step ``short_first_steps`` only utterances of at most ``short_first_frames`` are
    drawn. With few tokens per utterance the alignment signal is sharp, which is what gets
    CTC/RNN-T off the all-blank plateau.
    """
    short = [i for i, n in enumerate(lengths) if n <= short_first_frames]
    while info["step"] < short_first_steps and short:
        for batch in bucketed_batches([lengths[i] for i in short], max_batch_frames, rng):
            if info["step"] >= short_first_steps:
                break
            yield [short[i] for i in batch]
    while True:
        yield from bucketed_batches(lengths, max_batch_frames, rng)
        info["epoch"] += 1


def learning_rate(
    step: int, peak: float, warmup: int, hold_after: int | None = None, cooldown: tuple[int, int] | None = None
) -> float:
    """Linear warm-up, then inverse square-root decay.

    ``hold_after``: from this step on, the rate stays where the decay had brought it.
    ``cooldown`` (last_step, steps): the final ``steps`` before ``last_step`` ramp the rate
    linearly down to 0 (warmup-stable-decay; a short run gains most of its final accuracy there).
    """
    step = max(step, 1)
    decay_step = step if hold_after is None else min(step, max(hold_after, warmup))
    rate = peak * min(step / warmup, math.sqrt(warmup / decay_step))
    if cooldown is not None:
        last_step, steps = cooldown
        rate *= min(1.0, max(0.0, (last_step - step) / steps))
    return rate
