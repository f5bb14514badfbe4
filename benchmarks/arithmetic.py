"""The arithmetic limit of this machine for a model: how many real-time streams its cores could
compute if they did nothing but the model's matrix products at the speed of one large matmul.

    limit_streams = measured fp32 matmul FLOP/s per core x cores / model FLOPs per stream-second

The model's FLOPs come from ``flops.flops_per_second`` (torch's FLOP counter over the server's
per-chunk work with the model's default search); the matmul rate from timing square fp32
products on one thread. A capacity measured through the service divided by ``limit_streams``
is the fraction of the arithmetic limit the service reaches (issue 17).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from flops import flops_per_second  # benchmarks/flops.py (scripts run from this folder)

from server.search.loading import load_model_and_search


def matmul_flops_per_second(size: int = 1024, seconds: float = 2.0) -> float:
    """fp32 FLOP/s of (size x size) @ (size x size) on one thread, best of repeated timings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)  # warm-up (allocations, kernel choice)
        best = float("inf")
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - started)
        return 2.0 * size**3 / best
    finally:
        torch.set_num_threads(threads)


def arithmetic_limit(model_dir: Path, cores: int | None = None, audio_seconds: float = 10.0) -> dict[str, float]:
    """The model's FLOPs per stream-second, this machine's matmul rate, and the streams they allow."""
    model, search = load_model_and_search(model_dir)
    model_flops = flops_per_second(model, search, audio_seconds)["step_gflop_per_second"] * 1e9
    per_core = matmul_flops_per_second()
    cores = cores or os.cpu_count() or 1
    return {
        "model_gflop_per_stream_second": round(model_flops / 1e9, 3),
        "matmul_gflops_per_core": round(per_core / 1e9, 1),
        "cores": cores,
        "limit_streams": round(per_core * cores / model_flops, 1),
    }
