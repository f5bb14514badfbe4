"""The streaming step computes exactly what the masked full-utterance forward computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import stream_encoder
from random_model import tiny_encoder_config

from server.model.config import FeatureConfig
from server.model.encoder import ConformerEncoder

TOLERANCE = 1e-4


def _encoder(right_context: int, seed: int = 0) -> ConformerEncoder:
    torch.manual_seed(seed)
    config = tiny_encoder_config(
        64, num_layers=3, conv_kernel=7, right_context=right_context, max_relative_distance=16, dropout=0.0
    )
    encoder = ConformerEncoder(config, FeatureConfig()).eval()
    # Non-trivial CMVN so the normalisation is part of what is compared.
    encoder.feature_mean.normal_()
    encoder.feature_std.uniform_(0.5, 2.0)
    return encoder


@pytest.mark.parametrize("right_context", [0, 2])
@pytest.mark.parametrize("num_frames", [7, 50, 203, 358])
def test_arbitrary_pieces_equal_masked_forward(right_context: int, num_frames: int) -> None:
    encoder = _encoder(right_context)
    rng = np.random.default_rng(num_frames)
    features = rng.standard_normal((num_frames, 80)).astype(np.float32)
    with torch.no_grad():
        full, lengths = encoder(torch.from_numpy(features)[None], torch.tensor([num_frames]))
        for _ in range(3):
            pieces = list(rng.integers(1, 40, size=num_frames))
            streamed = stream_encoder(encoder, features, pieces)
            assert streamed.shape == full[0, : int(lengths[0])].shape
            assert (streamed - full[0]).abs().max().item() <= TOLERANCE


def test_streaming_differs_from_full_context() -> None:
    """Guard against a mask that is silently ignored: full context must give other outputs."""
    encoder = _encoder(2)
    features = torch.randn(1, 203, 80)
    with torch.no_grad():
        masked, _ = encoder(features, torch.tensor([203]))
        full_context, _ = encoder(features, torch.tensor([203]), chunk_size=None, left_chunks=None)
    assert (masked - full_context).abs().max().item() > 1e-2


def test_batched_step_equals_each_stream_alone() -> None:
    """Streams at different positions (and a final partial window) in one batch."""
    encoder = _encoder(2, seed=1)
    rng = np.random.default_rng(7)
    window = encoder.feature_window
    histories = [0, 1, 3, 7]  # chunks already consumed by each stream
    alone_outputs, caches_per_stream, windows_per_stream = [], [], []
    with torch.no_grad():
        for index, chunks in enumerate(histories):
            caches = encoder.init_caches(1)
            for _ in range(chunks):
                feats = torch.from_numpy(rng.standard_normal((1, window, 80)).astype(np.float32))
                _, _, k, v, c = encoder.step(
                    feats,
                    torch.tensor([window]),
                    caches["attn_keys"],
                    caches["attn_values"],
                    caches["conv_cache"],
                    caches["chunks_done"],
                )
                caches.update(attn_keys=k, attn_values=v, conv_cache=c, chunks_done=caches["chunks_done"] + 1)
            real = window if index != 2 else 13  # stream 2 is flushing a partial window
            feats = np.zeros((1, window, 80), np.float32)
            feats[:, :real] = rng.standard_normal((1, real, 80))
            caches_per_stream.append(caches)
            windows_per_stream.append((torch.from_numpy(feats), real))
            out, valid, k, v, c = encoder.step(
                torch.from_numpy(feats),
                torch.tensor([real]),
                caches["attn_keys"],
                caches["attn_values"],
                caches["conv_cache"],
                caches["chunks_done"],
            )
            alone_outputs.append((out[0, : int(valid[0])], k[0], v[0], c[0]))

        batch = {name: torch.cat([c[name] for c in caches_per_stream]) for name in caches_per_stream[0]}
        out, valid, k, v, c = encoder.step(
            torch.cat([w for w, _ in windows_per_stream]),
            torch.tensor([r for _, r in windows_per_stream]),
            batch["attn_keys"],
            batch["attn_values"],
            batch["conv_cache"],
            batch["chunks_done"],
        )
    for row, (alone_out, alone_k, alone_v, alone_c) in enumerate(alone_outputs):
        assert int(valid[row]) == alone_out.shape[0]
        assert (out[row, : alone_out.shape[0]] - alone_out).abs().max().item() <= 1e-5
        if row != 2:  # a partial final window ends the stream: its caches are not used again
            assert (k[row] - alone_k).abs().max().item() <= 1e-5
            assert (v[row] - alone_v).abs().max().item() <= 1e-5
            assert (c[row] - alone_c).abs().max().item() <= 1e-5
