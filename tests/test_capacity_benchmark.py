"""benchmarks/grpc_load.py's capacity figures (issue 17): the capacity search's probes, the
unbatched/batched ratio and the arithmetic limit, and one short run of all three end to end
against real started servers on the random model."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from asr_harness import requires_espeak

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their siblings by name

import arithmetic  # noqa: E402
import grpc_load  # noqa: E402


def _search(capacity: int, start: int = 8, maximum: int = 256) -> tuple[int, list[int]]:
    """Run the probe sequence against a server that holds exactly up to ``capacity`` streams."""
    passed = failed = None
    probes: list[int] = []
    while (streams := grpc_load.next_capacity_probe(passed, failed, start, maximum)) is not None:
        assert streams not in probes and len(probes) < 30
        probes.append(streams)
        if streams <= capacity:
            passed = streams
        else:
            failed = streams
    return passed or 0, probes


@pytest.mark.parametrize("capacity", [0, 1, 5, 8, 13, 40, 64, 100, 255, 256, 1000])
def test_capacity_search_finds_the_largest_level_that_holds_to_within_a_sixteenth(capacity: int) -> None:
    found, probes = _search(capacity)
    assert found <= capacity
    assert found == min(capacity, 256) or capacity - found <= max(1, found // 16)
    assert len(probes) <= 12


def test_a_level_holds_only_when_every_stream_completed_within_the_p95_limit() -> None:
    def run(completed: int, p95: float | None) -> dict:
        return {"streams": 4, "completed": completed, "result_latency": {"p95_s": p95}}

    assert grpc_load.holds(run(4, 0.5), 0.6)
    assert not grpc_load.holds(run(4, 0.7), 0.6)
    assert not grpc_load.holds(run(3, 0.1), 0.6)
    assert not grpc_load.holds(run(4, None), 0.6)


def test_the_started_server_admits_every_level_the_capacity_search_may_probe() -> None:
    plain = argparse.Namespace(streams=[8, 16], capacity_search=False, capacity_max=256)
    assert grpc_load.started_max_streams(plain) == 64
    searching = argparse.Namespace(streams=[32], capacity_search=True, capacity_max=256)
    assert grpc_load.started_max_streams(searching) == 256
    above = argparse.Namespace(streams=[100], capacity_search=False, capacity_max=8)
    assert grpc_load.started_max_streams(above) == 100


def test_arithmetic_limit_of_the_random_model(random_model_dir: Path) -> None:
    limit = arithmetic.arithmetic_limit(random_model_dir, cores=2, audio_seconds=2.0)
    assert limit["matmul_gflops_per_core"] > 0.5
    assert limit["model_gflop_per_stream_second"] > 0
    expected = limit["matmul_gflops_per_core"] * 2 / limit["model_gflop_per_stream_second"]
    assert limit["limit_streams"] == pytest.approx(expected, rel=0.01)


@requires_espeak
def test_one_short_run_reports_capacity_ratio_and_arithmetic(random_model_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "load.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "grpc_load.py"), "--model-dir", str(random_model_dir),
        "--streams", "1", "--speed", "8", "--duration-limit", "60", "--capacity-search", "--capacity-start", "1",
        "--capacity-max", "2", "--p95-limit", "5", "--unbatched-at", "2", "--arithmetic", "--report", str(report),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    figures = json.loads(report.read_text())
    assert [run["streams"] for run in figures["runs"]] == [1, 2]  # --unbatched-at joins the levels
    assert figures["capacity"]["streams"] == 2 and [r["streams"] for r in figures["capacity"]["levels"]] == [1, 2]
    ratio = figures["batched_unbatched"]
    assert ratio["streams"] == 2 and ratio["ratio"] > 0
    assert ratio["unbatched"]["server"]["batch_size_mean"] == pytest.approx(1.0)
    assert figures["arithmetic"]["fraction_of_limit"] == pytest.approx(
        2 / figures["arithmetic"]["limit_streams"], rel=0.01
    )


@requires_espeak
def test_step_speed_times_each_batch_size_on_the_cpu(random_model_dir: Path, tmp_path: Path) -> None:
    """The GPU benchmark's model-step half (benchmarks/gpu.sh), run here on the CPU."""
    report = tmp_path / "steps.json"
    command = [
        sys.executable, "step_speed.py", "--model", str(random_model_dir), "--device", "cpu", "--batches", "1", "3",
        "--steps", "2", "--warmup", "1", "--report", str(report),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=300, cwd=ROOT / "benchmarks")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    runs = json.loads(report.read_text())["runs"]
    assert [run["batch"] for run in runs] == [1, 3] and all(run["device"] == "cpu" for run in runs)
    for run in runs:
        assert run["step_ms"] > 0
        # streams carried = batch x chunk seconds / step seconds (the random model's chunks: 4 x 40 ms)
        assert run["real_time_streams"] == pytest.approx(run["batch"] * 0.16 / (run["step_ms"] / 1e3), rel=0.02)
        assert run["real_time_streams"] * run["seconds_per_stream_second"] == pytest.approx(1.0, rel=0.02)
