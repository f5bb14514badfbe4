"""Helpers for model-level tests on the random-init checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from server.model.checkpoint import load_model
from server.model.transducer import StepOutput, StreamingTransducer
from server.model.windowing import FeatureWindows
from server.search.beam import SearchConfig


def windows_of(model: StreamingTransducer, features: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The (window, real frames) pairs the server would cut from a whole fbank matrix (T, 80)."""
    windows = FeatureWindows(model.feature_window, model.feature_shift)
    windows.push(features)
    out = []
    while windows.ready():
        out.append((windows.pop_window(), model.feature_window))
    return out + windows.final_windows()


def noisy_model(random_model_dir: Path) -> StreamingTransducer:
    """The random model with blank made unlikely, so that it emits tokens, several per frame."""
    model = load_model(random_model_dir)
    with torch.no_grad():
        model.joiner.output.bias[model.tokenizer.blank_id] = -3.0
    return model


def round_robin_steps(
    model: StreamingTransducer, utterances: list[np.ndarray], start_at: list[int], search: SearchConfig | None = None
) -> Iterator[tuple[list[int], StepOutput]]:
    """Batch the streams of ``utterances`` (fbank (T_i, 80)) as the engine does: at every step,
    one window of each stream that has joined (stream i joins at step ``start_at[i]``) and has
    windows left, through one slot pool. Yields the batch's stream indices and the step output.
    """
    pending = [windows_of(model, u) for u in utterances]
    pool = model.init_state(len(utterances), search=search)
    step = 0
    while any(pending):
        rows = [i for i, p in enumerate(pending) if p and step >= start_at[i]]
        step += 1
        if not rows:
            continue
        windows = [pending[i].pop(0) for i in rows]
        index = torch.tensor(rows)
        out = model.step(
            torch.from_numpy(np.stack([w for w, _ in windows])),
            torch.tensor([r for _, r in windows]),
            pool.select(index),
            search,
        )
        pool.assign_(index, out.state)
        yield rows, out
