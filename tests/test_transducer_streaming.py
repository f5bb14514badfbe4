"""Model-level streaming: step-by-step decoding equals whole-utterance decoding, alone or batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from model_helpers import noisy_model, round_robin_steps, windows_of

from server.model.transducer import StreamingTransducer


def _decode_alone(model: StreamingTransducer, features: np.ndarray) -> list[tuple[int, int]]:
    state = model.init_state(1)
    tokens: list[tuple[int, int]] = []
    for window, real in windows_of(model, features):
        out = model.step(torch.from_numpy(window)[None], torch.tensor([real]), state)
        tokens += out.tokens[0]
        state = out.state
    return tokens


def test_step_by_step_equals_masked_whole_utterance(random_model_dir: Path) -> None:
    model = noisy_model(random_model_dir)
    rng = np.random.default_rng(0)
    for num_frames in (9, 64, 157):
        features = rng.standard_normal((num_frames, 80)).astype(np.float32)
        streamed = _decode_alone(model, features)
        with torch.no_grad():
            whole = model.transcribe_batch(torch.from_numpy(features)[None], torch.tensor([num_frames]))[0]
        assert streamed == whole
        assert len(streamed) > 0


def test_batched_streams_at_different_positions_equal_alone(random_model_dir: Path) -> None:
    """Round-robin batching of streams of different lengths, joining at different times."""
    model = noisy_model(random_model_dir)
    rng = np.random.default_rng(1)
    utterances = [rng.standard_normal((n, 80)).astype(np.float32) for n in (157, 60, 111, 23)]
    expected = [_decode_alone(model, u) for u in utterances]
    results: list[list[tuple[int, int]]] = [[] for _ in utterances]
    for rows, out in round_robin_steps(model, utterances, start_at=[0, 2, 3, 5]):  # joining at different steps
        for row, tokens in zip(rows, out.tokens, strict=True):
            results[row] += tokens
    assert results == expected
