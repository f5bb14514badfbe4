"""Inference skips the modules whose output layer is exactly zero, and computes the same function.

A Whisper-initialised block starts its first FFN, convolution module and language experts with zero
output; frozen, they stay zero (decision 0018). ``ConformerBlock.train(False)`` finds them.
"""

from __future__ import annotations

import numpy as np
import torch
from model_helpers import stream_encoder
from random_model import tiny_encoder_config
from torch.utils.flop_counter import FlopCounterMode

from server.model.config import FeatureConfig
from server.model.encoder import ConformerEncoder


def _encoder_with_silent_first_block() -> ConformerEncoder:
    torch.manual_seed(0)
    config = tiny_encoder_config(
        64, num_layers=2, conv_kernel=7, right_context=2, max_relative_distance=16, dropout=0.0, language_experts=True
    )
    encoder = ConformerEncoder(config, FeatureConfig(), num_languages=3)
    assert encoder.experts is not None
    with torch.no_grad():
        for layer in (encoder.layers[0].ffn1.net[4], encoder.layers[0].conv.pointwise_out):
            layer.weight.zero_()
            layer.bias.zero_()
        encoder.experts[1].up.normal_()  # the second block's experts speak; the first's stay zero
    return encoder


def _forward(encoder: ConformerEncoder, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out, _ = encoder(features, torch.tensor([features.shape[1]]), language_weights=weights)
    return out


def test_silent_modules_are_found_in_inference_only() -> None:
    encoder = _encoder_with_silent_first_block().eval()
    assert encoder.layers[0].silent == {"ffn1", "conv"}
    assert encoder.layers[1].silent == frozenset()
    assert encoder.experts is not None and encoder.experts[0].silent and not encoder.experts[1].silent
    encoder.train()
    assert encoder.layers[0].silent == frozenset() and not encoder.experts[0].silent


def test_skipping_silent_modules_keeps_the_output_and_saves_flops() -> None:
    encoder = _encoder_with_silent_first_block().eval()
    features = torch.randn(1, 120, 80)
    weights = torch.tensor([[0.5, 0.5, 0.0]])
    with FlopCounterMode(display=False) as skipping:
        skipped = _forward(encoder, features, weights)
    encoder.layers[0].silent = frozenset()  # as if nothing were silent
    assert encoder.experts is not None
    encoder.experts[0].silent = False
    with FlopCounterMode(display=False) as computing:
        computed = _forward(encoder, features, weights)
    assert torch.allclose(skipped, computed, atol=1e-5)
    assert skipping.get_total_flops() < 0.9 * computing.get_total_flops()


def test_streaming_with_silent_modules_equals_the_masked_forward() -> None:
    encoder = _encoder_with_silent_first_block().eval()
    features = np.random.default_rng(3).standard_normal((203, 80)).astype(np.float32)
    full = _forward(encoder, torch.from_numpy(features)[None], torch.full((1, 3), 1 / 3))
    streamed = stream_encoder(encoder, features, [13, 40, 7, 60, 83])
    assert (streamed - full[0, : streamed.shape[0]]).abs().max().item() <= 1e-4
