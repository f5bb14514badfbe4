"""int8 matrix products for CPU inference, with activation scales calibrated once per model.

The encoder's linear layers and the joiner's output layer (the search's largest product, run
every frame for every hypothesis) get int8 weights, one scale per output channel, and int8
inputs quantized with a fixed scale per layer: the largest input magnitude the layer saw on a
calibration set (``asr-train calibrate-int8``, stored with the model as ``int8_ranges.json``).
fbgemm's ``linear_with_input_q_dq_qweight_dq_output_fp32`` does the whole layer in one call, with
exact integer accumulation and float output. With a fixed scale each input element is quantized on
its own, so a stream gets exactly what it gets alone in any batch, as in float32 (dynamic
quantization, which scales a call's inputs by their range over the whole batch, would couple
streams: decision 0029). The prediction network and the decoder projection stay float: the search
reads them from a memo (``server.search.memo``).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from server.model.transducer import StreamingTransducer

log = logging.getLogger(__name__)

RANGES_FILE = "int8_ranges.json"
INT8_MAX = 127
INPUT_ZERO_POINT = 128  # quint8 inputs: 0 .. 255 around 128, symmetric like the weights


class StaticInt8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (per output channel) and int8 inputs at a fixed scale.

    x (..., K) -> (..., N) float32. ``input_range``: the largest input magnitude to represent
    (larger ones saturate)."""

    def __init__(self, linear: nn.Linear, input_range: float) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        weight_scale = (weight.abs().amax(dim=1).clamp_min(1e-12) / INT8_MAX).double()
        zero_points = torch.zeros(weight.shape[0], dtype=torch.int64)
        with warnings.catch_warnings():
            # torch 2.13 deprecates quantized tensors as a user-facing type; fbgemm's packed form needs one.
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch.quantize_per_channel(weight, weight_scale, zero_points, 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(quantized, bias)
        self.input_scale = max(float(input_range), 1e-6) / INT8_MAX
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # Kept for checks that read a linear layer's parameters (``conformer.is_zero_linear``).
        self.weight = linear.weight.detach()
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).float().contiguous()
        out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            rows, self.input_scale, INPUT_ZERO_POINT, self._packed
        )
        return out.view(*x.shape[:-1], self.out_features)


def quantized_layers(model: StreamingTransducer) -> dict[str, nn.Linear]:
    """The layers int8 applies to, by name: the encoder's linear layers and the joiner's output."""
    layers = {f"encoder.{name}": m for name, m in model.encoder.named_modules() if isinstance(m, nn.Linear)}
    if isinstance(model.joiner.output, nn.Linear):
        layers["joiner.output"] = model.joiner.output
    return layers


def int8_available() -> bool:
    """Whether this torch build has fbgemm's int8 linear with a fixed input scale (x86 CPUs)."""
    try:
        layer = StaticInt8Linear(nn.Linear(8, 8), 1.0)
        layer(torch.ones(2, 8))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


def read_ranges(model_dir: Path | str) -> dict[str, float] | None:
    """The calibrated input ranges stored with a model, or None when it has none."""
    path = Path(model_dir) / RANGES_FILE
    if not path.is_file():
        return None
    return {str(name): float(value) for name, value in json.loads(path.read_text())["input_ranges"].items()}


def write_ranges(model_dir: Path | str, ranges: dict[str, float], provenance: dict) -> Path:
    """Store calibrated input ranges with a model (``RANGES_FILE``), with how they were measured."""
    path = Path(model_dir) / RANGES_FILE
    path.write_text(json.dumps({"input_ranges": ranges, "calibration": provenance}, indent=1, sort_keys=True) + "\n")
    return path


@torch.no_grad()
def quantize_for_cpu(model: StreamingTransducer, ranges: dict[str, float]) -> StreamingTransducer:
    """Make the encoder's and the joiner output's linear layers int8, in place; returns the model.

    ``ranges``: each layer's calibrated input range (``read_ranges``); a layer without one stays
    float. Inference only: an eval-mode model on the CPU."""
    if model.training:
        raise ValueError("quantize an eval-mode model (inference only)")
    if model.joiner.output.weight.device.type != "cpu":
        raise ValueError("int8 products are for the CPU; a GPU runs the float model")
    for name, layer in quantized_layers(model).items():
        if name not in ranges:
            continue
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, StaticInt8Linear(layer, ranges[name]))
    return model


def is_quantized(model: StreamingTransducer) -> bool:
    """Whether ``quantize_for_cpu`` made the model int8."""
    return isinstance(model.joiner.output, StaticInt8Linear)
