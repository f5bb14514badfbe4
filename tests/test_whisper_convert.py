"""Whisper encoder conversion: a tiny CTranslate2 model.bin and a tiny openai-whisper .pt, written here,
convert to our safetensors names with the same shapes and values."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from training.cli import main as asr_train
from training.whisper.ctranslate2_format import read_model, write_model
from training.whisper.naming import from_ctranslate2

D, MELS, CTX, LAYERS, HEADS, FFN = 8, 4, 6, 2, 2, 16


def _ct2_variables(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A 2-layer Whisper encoder as CTranslate2 names it (float16), plus a decoder scalar and int8 weight."""

    def half(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    variables = {
        "encoder/conv1/weight": half(D, MELS, 3),
        "encoder/conv1/bias": half(D),
        "encoder/conv2/weight": half(D, D, 3),
        "encoder/conv2/bias": half(D),
        "encoder/position_encodings/encodings": half(CTX, D),
        "encoder/num_heads": np.array(HEADS, dtype=np.int16),
        "encoder/layer_norm/gamma": half(D),
        "encoder/layer_norm/beta": half(D),
        "decoder/num_heads": np.array(HEADS, dtype=np.int16),
        "decoder/embeddings/weight": rng.integers(-127, 127, (5, D)).astype(np.int8),
        "decoder/embeddings/weight_scale": np.full(5, 4.0, dtype=np.float32),
    }
    for i in range(LAYERS):
        prefix = f"encoder/layer_{i}/"
        qkv_bias = half(3 * D)
        qkv_bias[D : 2 * D] = 0  # Whisper's key has no bias
        variables |= {
            prefix + "self_attention/layer_norm/gamma": half(D),
            prefix + "self_attention/layer_norm/beta": half(D),
            prefix + "self_attention/linear_0/weight": half(3 * D, D),
            prefix + "self_attention/linear_0/bias": qkv_bias,
            prefix + "self_attention/linear_1/weight": half(D, D),
            prefix + "self_attention/linear_1/bias": half(D),
            prefix + "ffn/layer_norm/gamma": half(D),
            prefix + "ffn/layer_norm/beta": half(D),
            prefix + "ffn/linear_0/weight": half(FFN, D),
            prefix + "ffn/linear_0/bias": half(FFN),
            prefix + "ffn/linear_1/weight": half(D, FFN),
            prefix + "ffn/linear_1/bias": half(D),
        }
    return variables


def test_ctranslate2_file_round_trips(tmp_path: Path) -> None:
    variables = _ct2_variables(np.random.default_rng(0))
    path = tmp_path / "model.bin"
    write_model(path, variables, aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    raw = path.read_bytes()
    # The header exactly as the format says: version 6, "WhisperSpec\0" with its uint16 length, revision, count.
    assert struct.unpack_from("<IH", raw) == (6, 12) and raw[6:18] == b"WhisperSpec\0"
    assert struct.unpack_from("<II", raw, 18) == (3, len(variables))
    model = read_model(path)
    assert (model.spec, model.revision, model.version) == ("WhisperSpec", 3, 6)
    assert list(model.variables) == list(variables)
    for name, array in variables.items():
        assert model.variables[name].dtype == array.dtype
        np.testing.assert_array_equal(model.variables[name], array)
    np.testing.assert_array_equal(model.get("decoder/projection/weight"), variables["decoder/embeddings/weight"])
    with pytest.raises(ValueError, match="truncated"):
        read_model(io.BytesIO(raw[:-10]))
    with pytest.raises(ValueError, match="version 7"):
        read_model(io.BytesIO(struct.pack("<I", 7) + raw[4:]))


def test_bfloat16_and_int8_are_decoded(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, 0.15625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact in bfloat16
    raw = bytearray()
    raw += struct.pack("<IH", 6, 2) + b"X\0" + struct.pack("<II", 1, 1)
    raw += struct.pack("<H", 2) + b"w\0" + struct.pack("<BIBI", 1, 3, 5, 6) + bits.tobytes()
    raw += struct.pack("<I", 0)
    model = read_model(io.BytesIO(bytes(raw)))
    np.testing.assert_array_equal(model.variables["w"], values)


def _check_converted(out: Path, expected: dict[str, np.ndarray]) -> None:
    tensors = load_file(str(out / "encoder.safetensors"))
    assert set(tensors) == set(expected)
    for name, array in expected.items():
        assert tensors[name].dtype == np.float16 and tensors[name].shape == array.shape, name
        np.testing.assert_array_equal(tensors[name], array.astype(np.float16), err_msg=name)
    description = json.loads((out / "encoder.json").read_text())
    assert description["dims"] == {
        "n_mels": MELS,
        "n_ctx": CTX,
        "d_model": D,
        "num_heads": HEADS,
        "num_layers": LAYERS,
        "ffn_dim": FFN,
    }
    assert description["source"]["licence"].startswith("MIT") and len(description["source"]["sha256"]) == 64


def _expected_from(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our names for the tiny model's encoder, built independently of the converter's tables."""
    expected = {
        "conv1.weight": variables["encoder/conv1/weight"],
        "conv1.bias": variables["encoder/conv1/bias"],
        "conv2.weight": variables["encoder/conv2/weight"],
        "conv2.bias": variables["encoder/conv2/bias"],
        "positional_embedding": variables["encoder/position_encodings/encodings"],
        "final_norm.weight": variables["encoder/layer_norm/gamma"],
        "final_norm.bias": variables["encoder/layer_norm/beta"],
    }
    for i in range(LAYERS):
        src = f"encoder/layer_{i}/"
        qkv_w, qkv_b = (
            variables[src + "self_attention/linear_0/weight"],
            variables[src + "self_attention/linear_0/bias"],
        )
        for j, part in enumerate("qkv"):
            expected[f"layers.{i}.attn.{part}.weight"] = qkv_w[j * D : (j + 1) * D]
            expected[f"layers.{i}.attn.{part}.bias"] = qkv_b[j * D : (j + 1) * D]
        for ours, theirs in [
            ("attn.out.weight", "self_attention/linear_1/weight"),
            ("attn.out.bias", "self_attention/linear_1/bias"),
            ("attn_norm.weight", "self_attention/layer_norm/gamma"),
            ("attn_norm.bias", "self_attention/layer_norm/beta"),
            ("ffn_norm.weight", "ffn/layer_norm/gamma"),
            ("ffn_norm.bias", "ffn/layer_norm/beta"),
            ("ffn.fc1.weight", "ffn/linear_0/weight"),
            ("ffn.fc1.bias", "ffn/linear_0/bias"),
            ("ffn.fc2.weight", "ffn/linear_1/weight"),
            ("ffn.fc2.bias", "ffn/linear_1/bias"),
        ]:
            expected[f"layers.{i}.{ours}"] = variables[src + theirs]
    return expected


def test_convert_ctranslate2_in_two_parts(tmp_path: Path) -> None:
    variables = _ct2_variables(np.random.default_rng(1))
    whole = tmp_path / "model.bin"
    write_model(whole, variables)
    raw = whole.read_bytes()
    # As the base model's two wheels ship it: one file cut in two, concatenated in order.
    (tmp_path / "model.bin.part1").write_bytes(raw[:1000])
    (tmp_path / "model.bin.part2").write_bytes(raw[1000:])
    out = tmp_path / "out"
    parts = [str(tmp_path / "model.bin.part1"), str(tmp_path / "model.bin.part2")]
    assert asr_train(["convert-whisper", "--input", *parts, "--out", str(out), "--package", "test"]) == 0
    _check_converted(out, _expected_from(variables))


def test_int8_weights_are_dequantized(tmp_path: Path) -> None:
    variables = _ct2_variables(np.random.default_rng(2))
    variables["encoder/conv1/bias"] = np.array([[10, -20], [30, 40]], dtype=np.int8)
    variables["encoder/conv1/bias_scale"] = np.array([10.0, 20.0], dtype=np.float32)  # one scale per row
    write_model(tmp_path / "model.bin", variables)
    tensors, _ = from_ctranslate2(read_model(tmp_path / "model.bin"))
    np.testing.assert_allclose(tensors["conv1.bias"], [[1.0, -2.0], [1.5, 2.0]])


def test_convert_openai_checkpoint(tmp_path: Path) -> None:
    variables = _ct2_variables(np.random.default_rng(3))
    expected = _expected_from(variables)
    tensor = lambda name: torch.from_numpy(expected[name].astype(np.float32)).half()  # noqa: E731
    state = {
        "encoder.conv1.weight": tensor("conv1.weight"),
        "encoder.conv1.bias": tensor("conv1.bias"),
        "encoder.conv2.weight": tensor("conv2.weight"),
        "encoder.conv2.bias": tensor("conv2.bias"),
        "encoder.positional_embedding": tensor("positional_embedding"),
        "encoder.ln_post.weight": tensor("final_norm.weight"),
        "encoder.ln_post.bias": tensor("final_norm.bias"),
        "decoder.token_embedding.weight": torch.zeros(5, D, dtype=torch.float16),
    }
    for i in range(LAYERS):
        ours, theirs = f"layers.{i}.", f"encoder.blocks.{i}."
        pairs = [("attn.q", "attn.query"), ("attn.v", "attn.value"), ("attn.out", "attn.out"), ("attn_norm", "attn_ln"),
                 ("ffn_norm", "mlp_ln"), ("ffn.fc1", "mlp.0"), ("ffn.fc2", "mlp.2")]  # fmt: skip
        for a, b in pairs:
            state[f"{theirs}{b}.weight"] = tensor(f"{ours}{a}.weight")
            state[f"{theirs}{b}.bias"] = tensor(f"{ours}{a}.bias")
        state[f"{theirs}attn.key.weight"] = tensor(f"{ours}attn.k.weight")  # no key bias in Whisper
    dims = {"n_mels": MELS, "n_audio_ctx": CTX, "n_audio_state": D, "n_audio_head": HEADS, "n_audio_layer": LAYERS,
            "n_vocab": 5, "n_text_ctx": 4, "n_text_state": D, "n_text_head": HEADS, "n_text_layer": 1}  # fmt: skip
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"dims": dims, "model_state_dict": state}, checkpoint)
    out = tmp_path / "out"
    assert asr_train(["convert-whisper", "--input", str(checkpoint), "--out", str(out)]) == 0
    _check_converted(out, expected)
