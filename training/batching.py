"""Length-bucketed batches, padding and SpecAugment for transducer training."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from server.model.frames import SUBSAMPLING_FACTOR
from server.model.tokenizer import Tokenizer
from training.features import ConcatenatedCaches, FeatureCache


@dataclass
class Batch:
    features: Tensor  # (B, T, F) float32, zero-padded; (B, T', D) with encoded_layers
    feature_lengths: Tensor  # (B,), in the frames of ``features``
    targets: Tensor  # (B, U) int64, zero-padded
    target_lengths: Tensor  # (B,)
    texts: list[str]
    languages: list[str] = field(default_factory=list)
    # (B, K) multi-hot language masks for a CMM model (None: all languages, or a one-language model).
    language_weights: Tensor | None = None
    # 0: ``features`` are fbank frames. N > 0: they are the encoder's output after its (frozen) first
    # N blocks, in encoder frames (training.prefix_cache), and the encoder goes on from block N.
    encoded_layers: int = 0


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


def pad_frames(arrays: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """(T_i, C) arrays -> a zero-padded float32 batch (B, max T_i, C) and the lengths (B,)."""
    padded = torch.zeros(len(arrays), max(a.shape[0] for a in arrays), arrays[0].shape[1])
    for row, frames in enumerate(arrays):
        padded[row, : frames.shape[0]] = torch.from_numpy(np.asarray(frames, dtype=np.float32))
    return padded, torch.tensor([a.shape[0] for a in arrays])


def target_ids(cache: FeatureCache | ConcatenatedCaches, i: int, tokenizer: Tokenizer) -> list[int]:
    """Utterance i's target: its written-out pieces (t-SOT, with ``<cc>``) or its tokenized text."""
    pieces = cache.pieces[i]
    return tokenizer.encode(cache.texts[i]) if pieces is None else tokenizer.pieces_to_ids(pieces)


def collate(cache: FeatureCache | ConcatenatedCaches, indices: list[int], tokenizer: Tokenizer) -> Batch:
    """The utterances ``indices`` of ``cache`` as a padded batch (whatever frames the cache holds)."""
    features, lengths = pad_frames([cache[i] for i in indices])
    tokens = [target_ids(cache, i, tokenizer) for i in indices]
    targets = torch.zeros(len(indices), max(1, max(len(t) for t in tokens)), dtype=torch.int64)
    for row, t in enumerate(tokens):
        targets[row, : len(t)] = torch.tensor(t, dtype=torch.int64)
    return Batch(
        features=features,
        feature_lengths=lengths,
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
        _mask_time(features[row], length, fill, generator, time_mask_fraction, time_width)
    return features


def augment_prefix(
    frames: Tensor,
    lengths: Tensor,
    generator: torch.Generator,
    time_mask_fraction: float = 0.05,
    time_width: int = 20 // SUBSAMPLING_FACTOR,
) -> Tensor:
    """SpecAugment's time masks on a padded batch of cached encoder states (B, T', D), in place
    (``fit --cache-frozen-prefix``: the frozen blocks' output stands in for the features).

    The masks cover the share of time and the width (in encoder frames: 20 fbank frames are 5)
    that ``spec_augment`` masks in the features; a masked frame is set to its utterance's mean
    per channel (hidden states have channels of very different scale). No channel masks: a
    feature channel is a frequency band, a hidden channel is not.
    """
    for row in range(frames.shape[0]):
        length = int(lengths[row])
        _mask_time(frames[row], length, frames[row, :length].mean(dim=0), generator, time_mask_fraction, time_width)
    return frames


def _mask_time(
    frames: Tensor, length: int, fill: Tensor, generator: torch.Generator, fraction: float, max_width: int
) -> None:
    """Set random spans (up to ``max_width`` frames, ``fraction`` of ``length`` on average) of one
    utterance's frames (T, C) to ``fill`` (a scalar or (C,)), in place."""
    for _ in range(int(length * fraction / max(1, max_width / 2))):
        width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, length - width), (1,), generator=generator))
        frames[start : start + width] = fill
