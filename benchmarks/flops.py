"""Compute per second of audio for one stream: FLOPs of the encoder chunk and of the search over it.

Counts with ``torch.utils.flop_counter`` (matrix products and convolutions: what dominates) over
a stream of ``--seconds`` of noise decoded chunk by chunk through ``server.search.step.decode_chunk``,
the server's per-chunk work, with the model's default search (or ``--beam``). Usage:
    python benchmarks/flops.py [--model DIR] [--beam 1 32] [--seconds 10] [--report reports/flops.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from report import write_report  # benchmarks/report.py (scripts run from this folder)
from torch.utils.flop_counter import FlopCounterMode

from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.model.frontend import compute_fbank
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows
from server.search.loading import load_model_and_search
from server.search.options import Search
from server.search.step import decode_chunk, init_stream_state


def flops_per_second(model: StreamingTransducer, search: Search, seconds: float) -> dict:
    """FLOPs per audio second of one stream, split into the encoder's and the whole step's."""
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(int(seconds * model.config.sample_rate))).astype(np.float32)
    windows = FeatureWindows(model.feature_window, model.feature_shift, model.config.features.num_mel_bins)
    windows.push(compute_fbank(samples, model.config.sample_rate, model.config.features))
    state = init_stream_state(model, search, 1)
    encoder_flops = total_flops = 0
    with torch.inference_mode():
        while windows.ready():
            features = torch.from_numpy(windows.pop_window())[None]
            frames = torch.tensor([model.feature_window])
            with FlopCounterMode(display=False) as encoder_counter:
                model.encode_chunk(features, frames, state.encoder)
            with FlopCounterMode(display=False) as step_counter:
                state = decode_chunk(model, search, features, frames, state).state
            encoder_flops += encoder_counter.get_total_flops()
            total_flops += step_counter.get_total_flops()
    return {
        "beam": search.beam,
        "audio_seconds": seconds,
        "encoder_gflop_per_second": round(encoder_flops / seconds / 1e9, 3),
        "step_gflop_per_second": round(total_flops / seconds / 1e9, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--beam", type=int, nargs="+", help="search widths (default: the model's)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--report", type=Path, default=Path("reports/flops.json"))
    args = parser.parse_args()
    model, default_search = load_model_and_search(args.model)
    beams = args.beam or [default_search.beam]
    runs = [flops_per_second(model, default_search.with_options(beam=beam), args.seconds) for beam in beams]
    for run in runs:
        encoder, step = run["encoder_gflop_per_second"], run["step_gflop_per_second"]
        print(f"{model.config.name} beam={run['beam']}: encoder {encoder:.3f}, whole step {step:.3f} GFLOP/s of audio")
    write_report(args.report, model, runs)


if __name__ == "__main__":
    main()
