"""Model-level streaming: step-by-step decoding equals whole-utterance decoding, alone or batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from server.model.checkpoint import load_model
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows


def _windows(model: StreamingTransducer, features: np.ndarray) -> list[tuple[np.ndarray, int]]:
    windows = FeatureWindows(model.feature_window, model.feature_shift)
    windows.push(features)
    out = []
    while windows.ready():
        out.append((windows.pop_window(), model.feature_window))
    return out + windows.final_windows()


def _decode_alone(model: StreamingTransducer, features: np.ndarray) -> list[tuple[int, int]]:
    state = model.init_state(1)
    tokens: list[tuple[int, int]] = []
    for window, real in _windows(model, features):
        out = model.step(torch.from_numpy(window)[None], torch.tensor([real]), state)
        tokens += out.tokens[0]
        state = out.state
    return tokens


def _noisy_model(random_model_dir: Path) -> StreamingTransducer:
    model = load_model(random_model_dir)
    # Make blank unlikely so that random weights emit tokens, several per frame.
    with torch.no_grad():
        model.joiner.output.bias[model.tokenizer.blank_id] = -3.0
    return model


def test_step_by_step_equals_masked_whole_utterance(random_model_dir: Path) -> None:
    model = _noisy_model(random_model_dir)
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
    model = _noisy_model(random_model_dir)
    rng = np.random.default_rng(1)
    utterances = [rng.standard_normal((n, 80)).astype(np.float32) for n in (157, 60, 111, 23)]
    expected = [_decode_alone(model, u) for u in utterances]
    pending = [_windows(model, u) for u in utterances]
    start_at = [0, 2, 3, 5]  # step index at which each stream joins
    pool = model.init_state(len(utterances))
    results: list[list[tuple[int, int]]] = [[] for _ in utterances]
    step = 0
    while any(pending):
        rows = [i for i, p in enumerate(pending) if p and step >= start_at[i]]
        step += 1
        if not rows:
            continue
        windows = [pending[i].pop(0) for i in rows]
        index = torch.tensor(rows)
        out = model.step(torch.from_numpy(np.stack([w for w, _ in windows])),
                         torch.tensor([r for _, r in windows]), pool.select(index))
        pool.assign_(index, out.state)
        for row, tokens in zip(rows, out.tokens, strict=True):
            results[row] += tokens
    assert results == expected
