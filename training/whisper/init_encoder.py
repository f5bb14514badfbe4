"""A Conformer encoder that starts as Whisper's encoder (``asr-train convert-whisper`` output).

Each Whisper block (pre-norm self-attention, then pre-norm FFN with GELU) maps onto a Conformer
block whose other parts start silent, so the initial encoder computes Whisper's function except
for the frame rate:
- positions: Whisper's absolute sinusoids, each pair averaged (the stem pools pairs of frames),
  indexed by the frame's index in the stream modulo 750 (30 s); a linear probe of the frozen
  blocks without them is hardly better than chance (decision 0018);
- self-attention: Whisper's norm and q/k/v/out projections; the relative-position keys start at
  zero;
- second (half-step) FFN: Whisper's FFN with its output layer doubled, since the block adds half;
- first (macaron) FFN and convolution module: their output layers start at zero, so they add
  nothing until training gives them something to do;
- stem: Whisper's conv1/conv2 (unpadded), then a pair pooling to 25 Hz (``WhisperStem``);
- final norm: Whisper's ``ln_post``.
The features must be Whisper's log-mel (``FeatureConfig(kind="whisper")``), and the encoder's
CMVN stays the identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from server.model.config import EncoderConfig, FeatureConfig
from server.model.encoder import ConformerEncoder
from server.model.whisper_stem import WhisperStem

WHISPER_FEATURES = FeatureConfig(kind="whisper")


def whisper_encoder_config(dims: dict[str, int], **overrides: object) -> EncoderConfig:
    """An encoder config of Whisper's dimensions, streaming, with a small macaron FFN (FLOP budget)."""
    settings: dict[str, object] = {
        "d_model": dims["d_model"],
        "num_layers": dims["num_layers"],
        "num_heads": dims["num_heads"],
        "ffn_dim": dims["ffn_dim"],
        "macaron_ffn_dim": dims["d_model"] // 2,
        "frontend": "whisper",
        "activation": "gelu",
        "conv_kernel": 15,
        "chunk_size": 8,
        "left_chunks": 8,
        "right_context": 2,
        "max_relative_distance": 64,
        "absolute_positions": dims["n_ctx"] // 2 if "n_ctx" in dims else 0,
        **overrides,
    }
    return EncoderConfig.model_validate(settings)


def read_converted(encoder_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The tensors (float32) and dims of a ``convert-whisper`` output directory."""
    tensors = {name: t.float() for name, t in load_file(str(encoder_dir / "encoder.safetensors")).items()}
    dims = json.loads((encoder_dir / "encoder.json").read_text())["dims"]
    return tensors, dims


def whisper_state(encoder: ConformerEncoder, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The part of ``encoder``'s state dict that Whisper's tensors (and the silent starts) define."""
    if not isinstance(encoder.subsampling, WhisperStem):
        raise ValueError("the encoder has no Whisper stem: make it with whisper_encoder_config")
    current = encoder.state_dict()
    state = {
        f"subsampling.{name}": tensors[name] for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")
    }
    # Blocks past Whisper's (an encoder of its lower blocks plus new ones) keep their random start.
    whisper_blocks = sum(1 for name in tensors if name.startswith("layers.") and name.endswith(".attn.q.weight"))
    for index in range(min(len(encoder.layers), whisper_blocks)):
        ours, theirs = f"layers.{index}.", f"layers.{index}."
        attention, ffn2, ffn1 = ours + "attention.", ours + "ffn2.net.", ours + "ffn1.net."
        state[attention + "norm.weight"] = tensors[theirs + "attn_norm.weight"]
        state[attention + "norm.bias"] = tensors[theirs + "attn_norm.bias"]
        state[attention + "qkv.weight"] = torch.cat([tensors[f"{theirs}attn.{p}.weight"] for p in "qkv"])
        state[attention + "qkv.bias"] = torch.cat([tensors[f"{theirs}attn.{p}.bias"] for p in "qkv"])
        state[attention + "out.weight"] = tensors[theirs + "attn.out.weight"]
        state[attention + "out.bias"] = tensors[theirs + "attn.out.bias"]
        state[attention + "relative_keys"] = torch.zeros_like(current[attention + "relative_keys"])
        # FeedForward.net: 0 LayerNorm, 1 Linear, 2 activation, 3 Dropout, 4 Linear, 5 Dropout.
        state[ffn2 + "0.weight"] = tensors[theirs + "ffn_norm.weight"]
        state[ffn2 + "0.bias"] = tensors[theirs + "ffn_norm.bias"]
        state[ffn2 + "1.weight"] = tensors[theirs + "ffn.fc1.weight"]
        state[ffn2 + "1.bias"] = tensors[theirs + "ffn.fc1.bias"]
        state[ffn2 + "4.weight"] = 2.0 * tensors[theirs + "ffn.fc2.weight"]  # the block adds half of ffn2
        state[ffn2 + "4.bias"] = 2.0 * tensors[theirs + "ffn.fc2.bias"]
        for silent in (
            ffn1 + "4.weight",
            ffn1 + "4.bias",
            ours + "conv.pointwise_out.weight",
            ours + "conv.pointwise_out.bias",
        ):
            state[silent] = torch.zeros_like(current[silent])
    if encoder.position_table is not None:
        # Whisper's 50-Hz sinusoids, each pair averaged as the stem's pooling averages its frames.
        positions = tensors["positional_embedding"]
        state["position_table"] = 0.5 * (positions[0::2] + positions[1::2])[: encoder.position_table.shape[0]]
    state["output_norm.weight"] = tensors["final_norm.weight"]
    state["output_norm.bias"] = tensors["final_norm.bias"]
    state["feature_mean"] = torch.zeros_like(current["feature_mean"])
    state["feature_std"] = torch.ones_like(current["feature_std"])
    return state


def is_whisper_parameter(name: str, whisper_blocks: int) -> bool:
    """Whether a parameter of a Whisper-initialised model (its ``named_parameters`` name) starts
    as Whisper's: the stem's convolutions and, in the first ``whisper_blocks`` blocks, the
    attention (relative keys aside) and second FFN; everything else is new."""
    if name.startswith("encoder.subsampling.conv"):
        return True
    parts = name.split(".")  # encoder.layers.N.<module>.<...>
    if parts[:2] != ["encoder", "layers"] or len(parts) < 5 or int(parts[2]) >= whisper_blocks:
        return False
    return (parts[3] == "attention" and parts[4] != "relative_keys") or parts[3] == "ffn2"


def load_whisper_weights(encoder: ConformerEncoder, tensors: dict[str, torch.Tensor]) -> None:
    """Initialise ``encoder`` (made with ``whisper_encoder_config``) from Whisper's tensors, in place."""
    state = whisper_state(encoder, tensors)
    current = encoder.state_dict()
    for name, tensor in state.items():
        if tensor.shape != current[name].shape:
            raise ValueError(
                f"{name}: Whisper gives {tuple(tensor.shape)}, the encoder has {tuple(current[name].shape)}"
            )
    encoder.load_state_dict(state, strict=False)
