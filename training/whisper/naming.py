"""Our stable names for Whisper's encoder tensors, and the maps from CTranslate2's and openai-whisper's names.

Ours (``d`` = d_model, ``L`` = layers; every tensor float16 in the converted file):

- ``conv1.weight`` ``(d, n_mels, 3)``, ``conv1.bias`` ``(d,)``, ``conv2.weight`` ``(d, d, 3)`` (stride 2),
  ``conv2.bias``; ``positional_embedding`` ``(1500, d)`` (Whisper's absolute sinusoids, for reference);
- per layer ``layers.{i}.``: ``attn_norm.{weight,bias}`` ``(d,)`` (pre-norm of self-attention),
  ``attn.{q,k,v,out}.{weight,bias}`` (weights ``(d, d)``, PyTorch ``(out, in)``; Whisper's key has
  no bias, so ``attn.k.bias`` is zeros), ``ffn_norm.{weight,bias}``, ``ffn.fc1.{weight,bias}``
  ``(4d, d)``, ``ffn.fc2.{weight,bias}`` ``(d, 4d)`` (GELU between them);
- ``final_norm.{weight,bias}`` ``(d,)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from training.whisper.ctranslate2_format import CTranslate2Model

Tensors = dict[str, np.ndarray]


def _float(model: CTranslate2Model, name: str) -> np.ndarray:
    """A CTranslate2 float variable; an int8 weight is dequantized with its ``_scale`` (per output row)."""
    array = model.get(name)
    if array.dtype == np.int8:
        scale = model.get(f"{name}_scale").astype(np.float32)
        return array.astype(np.float32) / scale.reshape(-1, *([1] * (array.ndim - 1)))
    return array.astype(np.float32)


def _count_layers(names: Any) -> int:
    """Number of ``encoder/layer_N/`` blocks (``encoder/layer_norm`` is the final norm, not a layer)."""
    return len({match.group(1) for name in names if (match := re.match(r"encoder/layer_(\d+)/", name))})


def from_ctranslate2(model: CTranslate2Model) -> tuple[Tensors, dict[str, int]]:
    """Our encoder tensors (float32) and dims from a CTranslate2 ``WhisperSpec`` model."""
    if model.spec != "WhisperSpec":
        raise ValueError(f"not a Whisper model: spec {model.spec!r}")
    get = lambda name: _float(model, f"encoder/{name}")  # noqa: E731
    out: Tensors = {
        "conv1.weight": get("conv1/weight"),
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "positional_embedding": get("position_encodings/encodings"),
        "final_norm.weight": get("layer_norm/gamma"),
        "final_norm.bias": get("layer_norm/beta"),
    }
    d_model = out["conv1.weight"].shape[0]
    num_layers = _count_layers(model.variables)
    for i in range(num_layers):
        src, dst = f"layer_{i}/", f"layers.{i}."
        # CTranslate2 fuses the q, k and v projections into one (3d, d) linear.
        qkv_w, qkv_b = get(src + "self_attention/linear_0/weight"), get(src + "self_attention/linear_0/bias")
        for j, part in enumerate(("q", "k", "v")):
            out[f"{dst}attn.{part}.weight"] = qkv_w[j * d_model : (j + 1) * d_model]
            out[f"{dst}attn.{part}.bias"] = qkv_b[j * d_model : (j + 1) * d_model]
        pairs = {
            "attn.out": "self_attention/linear_1",
            "ffn.fc1": "ffn/linear_0",
            "ffn.fc2": "ffn/linear_1",
        }
        for ours, theirs in pairs.items():
            out[f"{dst}{ours}.weight"] = get(f"{src}{theirs}/weight")
            out[f"{dst}{ours}.bias"] = get(f"{src}{theirs}/bias")
        for ours, theirs in {"attn_norm": "self_attention/layer_norm", "ffn_norm": "ffn/layer_norm"}.items():
            out[f"{dst}{ours}.weight"] = get(f"{src}{theirs}/gamma")
            out[f"{dst}{ours}.bias"] = get(f"{src}{theirs}/beta")
    dims = {
        "n_mels": int(out["conv1.weight"].shape[1]),
        "n_ctx": int(out["positional_embedding"].shape[0]),
        "d_model": int(d_model),
        "num_heads": int(model.get("encoder/num_heads").reshape(-1)[0]),
        "num_layers": num_layers,
        "ffn_dim": int(out["layers.0.ffn.fc1.weight"].shape[0]) if num_layers else 0,
    }
    return out, dims


def from_openai(state: Mapping[str, Any], dims: Mapping[str, int]) -> tuple[Tensors, dict[str, int]]:
    """Our encoder tensors (float32) and dims from an openai-whisper ``model_state_dict`` and its ``dims``."""
    get = lambda name: np.asarray(state[f"encoder.{name}"].float().numpy(), dtype=np.float32)  # noqa: E731
    out: Tensors = {
        "conv1.weight": get("conv1.weight"),
        "conv1.bias": get("conv1.bias"),
        "conv2.weight": get("conv2.weight"),
        "conv2.bias": get("conv2.bias"),
        "positional_embedding": get("positional_embedding"),
        "final_norm.weight": get("ln_post.weight"),
        "final_norm.bias": get("ln_post.bias"),
    }
    num_layers = int(dims["n_audio_layer"])
    for i in range(num_layers):
        src, dst = f"blocks.{i}.", f"layers.{i}."
        for ours, theirs in {"q": "query", "k": "key", "v": "value", "out": "out"}.items():
            out[f"{dst}attn.{ours}.weight"] = get(f"{src}attn.{theirs}.weight")
            bias_name = f"encoder.{src}attn.{theirs}.bias"
            # Whisper's key projection has no bias: zeros keep every layer's naming the same.
            out[f"{dst}attn.{ours}.bias"] = (
                get(f"{src}attn.{theirs}.bias")
                if bias_name in state
                else np.zeros(out[f"{dst}attn.{ours}.weight"].shape[0], np.float32)
            )
        for ours, theirs in {
            "ffn.fc1": "mlp.0",
            "ffn.fc2": "mlp.2",
            "attn_norm": "attn_ln",
            "ffn_norm": "mlp_ln",
        }.items():
            out[f"{dst}{ours}.weight"] = get(f"{src}{theirs}.weight")
            out[f"{dst}{ours}.bias"] = get(f"{src}{theirs}.bias")
    ours_dims = {
        "n_mels": int(dims["n_mels"]),
        "n_ctx": int(dims["n_audio_ctx"]),
        "d_model": int(dims["n_audio_state"]),
        "num_heads": int(dims["n_audio_head"]),
        "num_layers": num_layers,
        "ffn_dim": int(out["layers.0.ffn.fc1.weight"].shape[0]) if num_layers else 0,
    }
    return out, ours_dims
