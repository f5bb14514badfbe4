"""Model-level streaming: chunk-by-chunk decoding equals whole-utterance decoding, alone or batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from model_helpers import noisy_model, streamed_tokens, whole_tokens

from server.search.options import Search


def test_step_by_step_equals_masked_whole_utterance(random_model_dir: Path) -> None:
    model = noisy_model(random_model_dir)
    greedy = Search()
    rng = np.random.default_rng(0)
    for num_frames in (9, 64, 157):
        features = rng.standard_normal((num_frames, 80)).astype(np.float32)
        (streamed,) = streamed_tokens(model, greedy, [features])
        assert streamed == whole_tokens(model, greedy, features)
        assert len(streamed) > 0


def test_batched_streams_at_different_positions_equal_alone(random_model_dir: Path) -> None:
    """Round-robin batching of streams of different lengths, joining at different times."""
    model = noisy_model(random_model_dir)
    greedy = Search()
    rng = np.random.default_rng(1)
    utterances = [rng.standard_normal((n, 80)).astype(np.float32) for n in (157, 60, 111, 23)]
    expected = [streamed_tokens(model, greedy, [u])[0] for u in utterances]
    assert streamed_tokens(model, greedy, utterances, join_at=[0, 2, 3, 5]) == expected
    assert all(expected)
