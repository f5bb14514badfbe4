"""Length-bucketed batches, padding and SpecAugment for transducer training."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from server.model.tokenizer import Tokenizer
from training.features import ConcatenatedCaches, FeatureCache


@dataclass
class Batch:
    features: Tensor  # (B, T, F) float32, zero-padded
    feature_lengths: Tensor  # (B,)
    targets: Tensor  # (B, U) int64, zero-padded
    target_lengths: Tensor  # (B,)
    texts: list[str]
    languages: list[str] = field(default_factory=list)
    # (B, K) multi-hot language masks for a CMM model (None: all languages, or a one-language model).
    language_weights: Tensor | None = None


def bucketed_batches(
    lengths: list[int], max_batch_frames: int, rng: random.Random, max_batch_size: int = 64
) -> list[list[int]]:
    """Group utterances of similar length so that B * max(T) <= max_batch_frames; shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] * (1 + 0.1 * rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and (longest_if_added * (len(current) + 1) > max_batch_frames or len(current) >= max_batch_size):
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(cache: FeatureCache | ConcatenatedCaches, indices: list[int], tokenizer: Tokenizer) -> Batch:
    feats = [np.asarray(cache[i], dtype=np.float32) for i in indices]
    tokens = [tokenizer.encode(cache.texts[i]) for i in indices]
    batch = len(indices)
    features = torch.zeros(batch, max(f.shape[0] for f in feats), feats[0].shape[1])
    targets = torch.zeros(batch, max(1, max(len(t) for t in tokens)), dtype=torch.int64)
    for row, (f, t) in enumerate(zip(feats, tokens, strict=True)):
        features[row, : f.shape[0]] = torch.from_numpy(f)
        targets[row, : len(t)] = torch.tensor(t, dtype=torch.int64)
    return Batch(
        features=features,
        feature_lengths=torch.tensor([f.shape[0] for f in feats]),
        targets=targets,
        target_lengths=torch.tensor([len(t) for t in tokens]),
        texts=[cache.texts[i] for i in indices],
        languages=[cache.languages[i] for i in indices],
    )


def spec_augment(
    features: Tensor,
    lengths: Tensor,
    generator: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 12,
    time_mask_fraction: float = 0.05,
    time_width: int = 20,
) -> Tensor:
    """SpecAugment (Park et al. 2019) without time warping, in place on a padded batch.

    Masked regions are set to the utterance mean so that CMVN-normalised inputs see 0-ish.
    """
    batch, _, num_bins = features.shape
    for row in range(batch):
        length = int(lengths[row])
        fill = features[row, :length].mean()
        for _ in range(freq_masks):
            width = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, num_bins - width + 1, (1,), generator=generator))
            features[row, :length, start : start + width] = fill
        for _ in range(int(length * time_mask_fraction / max(1, time_width / 2))):
            width = int(torch.randint(0, time_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, length - width), (1,), generator=generator))
            features[row, start : start + width] = fill
    return features
