"""Frame-rate facts in one place: the fbank frame shift, the encoder's subsampling, and what follows.

The fbank frame shift is a model setting (``FeatureConfig.frame_shift_ms``, 10 ms for every
model so far); the convolutional front end subsamples it by ``SUBSAMPLING_FACTOR``, so an
encoder frame (and a token timestamp) is 40 ms. Everything that converts frames to time,
or time to frames, goes through these helpers.
"""

from __future__ import annotations

from server.model.config import FeatureConfig

# Two stride-2 convolutions (server.model.conformer.Subsampling).
SUBSAMPLING_FACTOR = 4
# Extra fbank frames the two 3-wide convolutions read beyond SUBSAMPLING_FACTOR per output frame.
SUBSAMPLING_EXTRA_FRAMES = 3


def fbank_frames_per_second(features: FeatureConfig) -> float:
    """Fbank frames per second of audio (100 at a 10 ms shift)."""
    return 1000.0 / features.frame_shift_ms


def encoder_frame_ms(features: FeatureConfig) -> int:
    """Milliseconds of audio per encoder frame (40 at a 10 ms shift)."""
    return int(features.frame_shift_ms * SUBSAMPLING_FACTOR)
