"""int8 dynamic quantization of the model's matrix products for CPU inference.

The encoder's linear layers and the joiner's output layer (the search's largest product, run
every frame for every hypothesis) get int8 weights (per output channel) and int8 activations
quantized per call (``torch.ao.quantization.quantize_dynamic``, fbgemm kernels: AVX2 and VNNI).
The prediction network and the decoder projection stay float: the search reads them from a
memo (``server.search.memo``), computed once per token context.

Dynamic quantization scales each call's activations by their range over the whole call, that is
over every stream of a batched step: a stream's result then depends (slightly) on its batch
mates, which float32 never does. So it is the server's ``--int8`` option, off by default;
decision 0029 has the accuracy and speed measurements.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from server.model.transducer import StreamingTransducer


def quantize_for_cpu(model: StreamingTransducer) -> StreamingTransducer:
    """Replace, in place, the encoder's and the joiner output's ``nn.Linear`` layers by int8 dynamic
    ones; returns the model. Inference only: call after ``eval()`` and never train it again."""
    if model.training:
        raise ValueError("quantize an eval-mode model (inference only)")
    with warnings.catch_warnings():
        # torch 2.13 points eager-mode quantization users at torchao; the API is still shipped.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        model.encoder = torch.ao.quantization.quantize_dynamic(model.encoder, {nn.Linear}, dtype=torch.qint8)
        model.joiner.output = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(model.joiner.output), {nn.Linear}, dtype=torch.qint8
        )[0]
    return model


def is_quantized(model: StreamingTransducer) -> bool:
    """Whether ``quantize_for_cpu`` was applied."""
    return not isinstance(model.joiner.output, nn.Linear)
