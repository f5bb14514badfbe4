"""Helpers for model-level tests on the random-init checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from server.model.checkpoint import load_model
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows


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
