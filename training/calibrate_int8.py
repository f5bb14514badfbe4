"""``asr-train calibrate-int8``: measure the input range of each layer the server's ``--int8`` makes
int8, on speech streamed through the engine's own path, and store them with the model.

    asr-train calibrate-int8 --model models/en-small --manifest data/dev/manifest.jsonl [--utterances 60]

Each utterance is streamed in 100 ms pieces (``server.engine.offline.decode_streams``, the default
search), all as one batch, while forward hooks record the largest input magnitude of every
quantized layer (``server.model.quantize.quantized_layers``). The ranges go to the model's
``int8_ranges.json`` with the manifest and utterance count. Calibrate on a development set, never
on the held-out set that reports the int8 model's accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import Tensor, nn

from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams, in_pieces
from server.model.quantize import quantized_layers, write_ranges
from server.model.transducer import StreamingTransducer
from server.search.loading import load_model_and_search
from server.search.options import Search
from training.manifest import read_audio, read_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model directory (the ranges are written into it)")
    parser.add_argument("--manifest", type=Path, required=True, help="development speech, JSON lines {audio, text}")
    parser.add_argument("--utterances", type=int, default=60, help="the first N of the manifest")
    parser.add_argument("--threads", type=int, default=2)


def input_ranges(model: StreamingTransducer, search: Search, streams: list[np.ndarray]) -> dict[str, float]:
    """The largest input magnitude of each quantized layer while ``streams`` (16 kHz float32) are decoded."""
    ranges: dict[str, float] = {}

    def recorder(name: str):
        def record(_: nn.Module, inputs: tuple[Tensor, ...], __: Tensor) -> None:
            ranges[name] = max(ranges.get(name, 0.0), float(inputs[0].detach().abs().max()))

        return record

    hooks = [layer.register_forward_hook(recorder(name)) for name, layer in quantized_layers(model).items()]
    try:
        decode_streams(model, search, [in_pieces(samples, 1600) for samples in streams], StreamOptions())
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model, search = load_model_and_search(args.model)
    rate = model.config.sample_rate
    streams = []
    for utterance in read_manifest(args.manifest)[: args.utterances]:
        samples, source_rate = read_audio(utterance.audio)
        streams.append(soxr.resample(samples, source_rate, rate).astype(np.float32) if source_rate != rate else samples)
    ranges = input_ranges(model, search, streams)
    provenance = {"manifest": str(args.manifest), "utterances": len(streams), "command": "asr-train calibrate-int8"}
    path = write_ranges(args.model, ranges, provenance)
    print(f"wrote {path}: input ranges of {len(ranges)} layers from {len(streams)} utterances")
    return 0
