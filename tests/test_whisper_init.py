"""A Whisper-initialised encoder computes Whisper's encoder (at 25 Hz), and streams exactly."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model_helpers import stream_encoder
from safetensors.torch import save_file

from server.model.config import FeatureConfig
from server.model.encoder import ConformerEncoder
from server.model.frontend import FbankStream, compute_fbank
from training.multilingual_model import _lower_blocks, build_multilingual_model
from training.whisper.init_encoder import (
    WHISPER_FEATURES,
    is_whisper_parameter,
    load_whisper_weights,
    whisper_encoder_config,
    whisper_state,
)

DIMS = {"n_mels": 80, "d_model": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "n_ctx": 24}


def _whisper_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes ``asr-train convert-whisper`` writes."""
    generator = torch.Generator().manual_seed(seed)
    d, f = DIMS["d_model"], DIMS["ffn_dim"]

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    tensors = {"conv1.weight": rand(d, 80, 3), "conv1.bias": rand(d), "conv2.weight": rand(d, d, 3)}
    tensors["positional_embedding"] = rand(DIMS["n_ctx"], d)
    tensors |= {"conv2.bias": rand(d), "final_norm.weight": 1 + rand(d), "final_norm.bias": rand(d)}
    for i in range(DIMS["num_layers"]):
        p = f"layers.{i}."
        for name in ("attn_norm", "ffn_norm"):
            tensors |= {f"{p}{name}.weight": 1 + rand(d), f"{p}{name}.bias": rand(d)}
        for name in ("q", "k", "v", "out"):
            tensors |= {f"{p}attn.{name}.weight": rand(d, d), f"{p}attn.{name}.bias": rand(d)}
        tensors |= {f"{p}ffn.fc1.weight": rand(f, d), f"{p}ffn.fc1.bias": rand(f)}
        tensors |= {f"{p}ffn.fc2.weight": rand(d, f), f"{p}ffn.fc2.bias": rand(d)}
    return tensors


def _whisper_reference(t: dict[str, torch.Tensor], pool: torch.nn.Conv1d, mel: torch.Tensor) -> torch.Tensor:
    """Whisper's encoder written out (unpadded convolutions) at 25 Hz: the pair pooling of the stem
    output plus Whisper's positions, pooled alike (wrapping around after n_ctx / 2 frames)."""
    d, heads = DIMS["d_model"], DIMS["num_heads"]
    h = F.gelu(F.conv1d(mel.transpose(1, 2), t["conv1.weight"], t["conv1.bias"]))
    h = F.gelu(F.conv1d(h, t["conv2.weight"], t["conv2.bias"], stride=2))
    h = pool(h).transpose(1, 2)
    batch, frames, _ = h.shape
    pooled_positions = 0.5 * (t["positional_embedding"][0::2] + t["positional_embedding"][1::2])
    h = h + pooled_positions[torch.arange(frames) % pooled_positions.shape[0]]
    for i in range(DIMS["num_layers"]):
        p = f"layers.{i}."
        y = F.layer_norm(h, (d,), t[p + "attn_norm.weight"], t[p + "attn_norm.bias"])
        q, k, v = (
            (y @ t[f"{p}attn.{n}.weight"].T + t[f"{p}attn.{n}.bias"]).view(batch, frames, heads, -1).transpose(1, 2)
            for n in "qkv"
        )
        attended = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, -1) @ v
        h = h + attended.transpose(1, 2).reshape(batch, frames, d) @ t[p + "attn.out.weight"].T + t[p + "attn.out.bias"]
        y = F.layer_norm(h, (d,), t[p + "ffn_norm.weight"], t[p + "ffn_norm.bias"])
        h = h + F.gelu(y @ t[p + "ffn.fc1.weight"].T + t[p + "ffn.fc1.bias"]) @ t[p + "ffn.fc2.weight"].T
        h = h + t[p + "ffn.fc2.bias"]
    return F.layer_norm(h, (d,), t["final_norm.weight"], t["final_norm.bias"])


def _encoder(**overrides: object) -> tuple[ConformerEncoder, dict[str, torch.Tensor]]:
    config = whisper_encoder_config(DIMS, dropout=0.0, chunk_size=4, left_chunks=2, right_context=1, **overrides)
    encoder = ConformerEncoder(config, WHISPER_FEATURES).eval()
    tensors = _whisper_tensors()
    load_whisper_weights(encoder, tensors)
    return encoder, tensors


def test_the_initialised_encoder_computes_whispers_function() -> None:
    encoder, tensors = _encoder()
    mel = torch.randn(2, 203, 80) * 0.5
    with torch.no_grad():
        ours, lengths = encoder(mel, torch.tensor([203, 203]), chunk_size=None, left_chunks=None)
        reference = _whisper_reference(tensors, encoder.subsampling.pool, mel)
    assert ours.shape == reference.shape and int(lengths[0]) == reference.shape[1]
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_the_whisper_stem_streams_chunk_by_chunk_as_the_masked_forward() -> None:
    encoder, _ = _encoder()
    with torch.no_grad():  # wake the silent modules so that the test covers them too
        for parameter in encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    features = np.random.default_rng(3).standard_normal((157, 80)).astype(np.float32)
    with torch.no_grad():
        streamed = stream_encoder(encoder, features, [13, 40, 1, 77, 26])
        whole, lengths = encoder(torch.from_numpy(features)[None], torch.tensor([157]))
    assert streamed.shape[0] == int(lengths[0]) > 10
    torch.testing.assert_close(streamed, whole[0, : streamed.shape[0]], atol=1e-4, rtol=1e-4)


def test_whisper_features_stream_as_they_compute_whole_and_are_scaled_as_whisper() -> None:
    samples = (0.3 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    whole = compute_fbank(samples, 16000, WHISPER_FEATURES)
    stream = FbankStream(WHISPER_FEATURES)
    pieces = np.concatenate([stream.accept(samples[i : i + 777]) for i in range(0, samples.size, 777)])
    np.testing.assert_array_equal(pieces, whole)
    floor = (WHISPER_FEATURES.whisper_log10_floor + 4) / 4
    assert whole.shape == (99, 80) and whole.min() >= floor - 1e-6 and 0.0 < whole.max() < 2.0
    kaldi = compute_fbank(samples, 16000, FeatureConfig())
    frames = min(len(kaldi), len(whole))
    assert not np.allclose(whole[:frames], kaldi[:frames], atol=0.5)


def test_whisper_parameters_are_told_from_the_new_ones() -> None:
    """fit --pretrained-lr-scale: exactly the weights Whisper gives (not the ones that start silent)."""
    encoder, tensors = _encoder()
    given = {
        f"encoder.{name}"
        for name, value in whisper_state(encoder, tensors).items()
        if name in dict(encoder.named_parameters()) and bool(value.abs().sum() > 0) and "relative_keys" not in name
    }
    given -= {"encoder.output_norm.weight", "encoder.output_norm.bias"}  # Whisper's, but the output's norm: new role
    named = {f"encoder.{name}" for name, _ in encoder.named_parameters()}
    blocks = DIMS["num_layers"]
    assert {name for name in named if is_whisper_parameter(name, blocks)} == given
    assert not is_whisper_parameter("joiner.output.weight", blocks)
    assert not is_whisper_parameter("encoder.layers.0.conv.x", blocks)
    # A block past Whisper's (--new-layers) is new throughout.
    assert not is_whisper_parameter(f"encoder.layers.{blocks}.attention.qkv.weight", blocks)


def test_an_encoder_of_whispers_lower_blocks_and_new_ones() -> None:
    """--whisper-layers 1 --new-layers 2: block 0 is Whisper's, blocks 1 and 2 keep their random start."""
    tensors = _lower_blocks(_whisper_tensors(), 1)
    assert not any(name.startswith("layers.1.") for name in tensors)
    config = whisper_encoder_config(DIMS, dropout=0.0, chunk_size=4, left_chunks=2, right_context=1, num_layers=3)
    encoder = ConformerEncoder(config, WHISPER_FEATURES)
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    load_whisper_weights(encoder, tensors)
    after = encoder.state_dict()
    torch.testing.assert_close(after["layers.0.attention.out.weight"], tensors["layers.0.attn.out.weight"])
    for name in ("layers.1.attention.qkv.weight", "layers.2.ffn2.net.1.weight"):
        torch.testing.assert_close(after[name], before[name])


def test_new_blocks_on_whisper_start_as_the_identity(tmp_path: Path) -> None:
    """--new-layers: the model's new blocks pass Whisper's features through until they learn."""
    converted = tmp_path / "whisper"
    converted.mkdir()
    save_file(
        {name: tensor.contiguous() for name, tensor in _whisper_tensors().items()},
        str(converted / "encoder.safetensors"),
    )
    (converted / "encoder.json").write_text(json.dumps({"dims": DIMS}))
    texts = ["please call me back tomorrow morning", "bitte rufen sie mich morgen an", "the train leaves at nine"] * 40
    args = Namespace(
        seed=0, vocab_size=24, name="t", whisper_encoder=converted, whisper_ffn_dim=64, whisper_layers=1, new_layers=2
    )
    model = build_multilingual_model(args, texts, ["en", "de", "en"] * 40, tmp_path).eval()
    features = torch.randn(1, 103, 80) * 0.5
    with torch.no_grad():
        x = model.encoder._embed(features)
        position = torch.arange(x.shape[1])
        distance = position[None, :] - position[:, None]
        full = torch.ones(1, x.shape[1], x.shape[1], dtype=torch.bool)
        after_whisper, *_ = model.encoder.layers[0](x, full, distance, x.shape[1])
        through_new = after_whisper
        for block in list(model.encoder.layers)[1:]:
            through_new, *_ = block(through_new, full, distance, x.shape[1])
    assert len(model.encoder.layers) == 3
    torch.testing.assert_close(through_new, after_whisper)
