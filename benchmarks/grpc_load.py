"""Load benchmark of the real gRPC service: N concurrent live streams, latency and server cost.

Starts an ``asr-server`` on 127.0.0.1 (or connects to one on loopback with ``--server``),
then for each N in ``--streams`` opens N concurrent ``StreamingRecognize`` calls
(``asr_client.AsyncAsrClient``) that stream a speech file in ``--chunk-ms`` chunks at
real-time pace (``--speed`` times real time), half-close, and wait for the final result.
The streams share ``--connections`` TCP connections (default: min(N, 16)), stream i on
connection i mod C: a server with ``--workers`` > 1 spreads connections, not streams, over its
worker processes, so one connection would load one worker. (The channels of one process to
one address share a connection unless told otherwise: each here has its own subchannel pool.)
Usage:
    python benchmarks/grpc_load.py [--model-dir DIR] [--streams 1 4 8 16 32] [--speed 1.0]
        [--connections C] [--audio FILE ...] [--duration-limit 60] [--report reports/grpc_load.json]
    python benchmarks/grpc_load.py --server-arg=--workers=2 ...       # the started server's flags
    python benchmarks/grpc_load.py --server 127.0.0.1:50051 --metrics-port 9400 --server-pid PID
    python benchmarks/grpc_load.py --audio long20.wav --streams 32 --capacity-search --unbatched-at 32 \
        --arithmetic                                                     # issue 17's three figures

Audio: by default a few sentences synthesized with ``espeak-ng --stdout`` at run time (one
file per sentence; stream i plays file i mod the number of files), or ``--audio FILE ...``
(any format soundfile reads, sent as LINEAR16 at the file's own rate; the server
resamples). Stream i starts i/N of a chunk period after stream 0, so the chunks of the N
streams arrive spread over each period rather than all at once.

What is measured, per N:

* completed: streams that ended with the server's last response, without an error, within
  ``--duration-limit`` (the limit bounds each N: streams still open then are cancelled).
* result latency (client side): the client records, for every chunk, the wall time it was
  handed to gRPC and the audio time its end reaches. Every response carries
  ``audio_processed`` (P, audio of the stream through the model so far; where it is unset,
  the latest result ``end_time`` is used). A response is matched to the chunk that contains
  audio time P (the first chunk whose end is at or after P), and its latency is receive time
  minus that chunk's send time. So it is "from sending the chunk to receiving the
  partial that covers it", and includes the wait for the model's lookahead audio and the
  rest of a model step's window (up to one chunk), the scheduler's batching wait, the
  model step, and gRPC transport both ways. The server only sends a response when the
  hypothesis changed (or an utterance ended), so the samples are the responses that carry
  results (partials, and finals of utterances closed by endpointing mid-stream). Left out:
  the stream's last response (the final result of the flush after the half-close: that is
  the final latency below) and responses whose P plus the model's lookahead
  (``ModelInfo.latency_ms - chunk_ms``) passes the end of the audio (made by zero-padded
  flush windows, after the half-close).
* final latency: from the half-close (end of audio, right after the last chunk is handed
  to gRPC) to receiving the stream's last response, the one with the final result.
* server figures, from the Prometheus endpoint, as differences of the counters scraped
  before and after the N streams ran (so earlier N do not leak in): mean of
  ``asr_batch_size`` (streams per model step), mean of ``asr_step_seconds``, the server's
  own mean partial latency and queue wait, and the step-time RTF over the whole run
  (sum of step seconds over ``asr_audio_seconds_total``, what the recording rule
  ``instance_model:asr_real_time_factor:ratio_rate1m`` computes per minute).
* server CPU: user plus system CPU seconds of the server process and its child processes
  (the ``--workers`` processes; psutil when installed, else /proc) over the run, per second
  of audio streamed (summed over streams): the CPU cost of one real-time stream, in cores,
  which should fall as batches grow. With ``--server`` it needs ``--server-pid``. CPU used
  by the benchmark client itself (same machine) is reported too.

Capacity figures (issue 17), each on request:

* ``--capacity-search``: the largest N whose streams all complete with result latency p95 at
  most ``--p95-limit`` (0.6 s): N doubles from ``--capacity-start`` until a level fails, then
  bisects to within 1/16 (report ``capacity``: the N and every level run).
* ``--unbatched-at N``: N streams again on a second started server with ``--max-batch-size=1``;
  ``batched_unbatched.ratio`` is its server CPU per audio second over the batched one's.
* ``--arithmetic``: the model's FLOPs per stream-second and this machine's fp32 matmul FLOP/s
  per core (``benchmarks/arithmetic.py``): ``limit_streams`` = cores x matmul rate / model FLOPs,
  and ``fraction_of_limit`` = capacity / limit_streams.

Prints a table and writes a JSON report (default ``reports/grpc_load.json``). All traffic
goes to loopback; every loop is bounded by a count and a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from asr_client import AsyncAsrClient, PcmAudio, asr_pb2, read_audio_file, recognition_config
from asr_client.audio import BYTES_PER_SAMPLE, chunk_size_bytes, split_chunks
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

LOOPBACK = "127.0.0.1"

DEFAULT_SENTENCES = (
    "please call me back tomorrow morning after the meeting with the new team.",
    "the weather will be cold and windy in the north with some rain later today.",
    "she bought three small boxes of green apples at the market on her way home.",
    "we need to send the final report to the office before the end of the week.",
)

# Wide enough for the table when the output is not a terminal (a log file, CI).
console = Console(width=None if sys.stdout.isatty() else 180)


# -- audio ------------------------------------------------------------------------------------
def synthesize(sentences: list[str], out_dir: Path, timeout_s: float = 30.0) -> list[Path]:
    """One WAV file per sentence, made with ``espeak-ng --stdout``."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("grpc_load: espeak-ng not found; install it or pass --audio FILE ...")
    paths = []
    for index, sentence in enumerate(sentences):
        wav = subprocess.run([espeak, "--stdout", sentence], check=True, capture_output=True, timeout=timeout_s).stdout
        path = out_dir / f"sentence-{index}.wav"
        path.write_bytes(wav)
        paths.append(path)
    return paths


# -- server process, metrics, CPU ------------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` (all its threads) and of its descendants
    alive now (a ``--workers`` server's worker processes); None if ``pid`` is unreadable."""
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            total = 0.0
            for each in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = each.cpu_times()
                    total += float(times.user + times.system)
            return total
        except psutil.Error:
            return None
    stats = _proc_stats()
    if pid not in stats:
        return None
    family, total = {pid}, 0.0
    while True:  # descendants: children of the family, until no more join
        more = {child for child, (parent, _) in stats.items() if parent in family} - family
        if not more:
            break
        family |= more
    for member in family:
        total += stats[member][1]
    return total


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user plus system CPU seconds) of every process in /proc."""
    stats = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = path.read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; fields after its closing parenthesis.
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        stats[int(path.parent.name)] = (int(fields[1]), (utime + stime) / ticks)
    return stats


def own_cpu_seconds() -> float:
    """CPU seconds used by this (client) process so far."""
    times = os.times()
    return times.user + times.system


def scrape(url: str | None, model: str, timeout_s: float = 5.0) -> dict[str, float]:
    """The samples of the server's ``asr_*`` metrics for ``model`` (label-free ones too)."""
    if url is None:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback URL)
            text = response.read().decode()
    except OSError as error:
        raise SystemExit(f"grpc_load: cannot scrape {url}: {error}") from None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("asr_") or sample.labels.get("model", model) != model:
                continue
            if "le" in sample.labels:
                continue  # histogram buckets: sums and counts are enough here
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def histogram_mean(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    """Mean of the observations of histogram ``name`` between two scrapes."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return total / count if count > 0 else None


class ServerProcess:
    """An ``asr-server`` subprocess on 127.0.0.1 with free ports; SIGTERM on exit."""

    def __init__(self, model_dir: Path | None, max_streams: int, extra_args: list[str], log_path: Path) -> None:
        self.model_dir = model_dir
        self.max_streams = max_streams
        self.extra_args = extra_args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None

    def command(self) -> list[str]:
        executable = Path(sys.executable).parent / "asr-server"
        program = str(executable) if executable.exists() else shutil.which("asr-server")
        if program is None:
            raise SystemExit("grpc_load: asr-server not found (install the project, or use --server)")
        model = ["--model-dir", str(self.model_dir)] if self.model_dir is not None else []
        return [
            program,
            "--host", LOOPBACK,
            "--port", "0",
            "--metrics-port", "0",
            *model,
            "--max-streams", str(self.max_streams),
            "--drain-timeout-s", "5",
            "--log-level", "INFO",
            # One engine process unless --server-arg=--workers=N says otherwise (a later flag
            # wins): the soak and large-message benchmarks read one process's memory.
            "--workers", "1",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout_s: float) -> None:
        """Start it and wait (at most ``timeout_s``) until it logs both ports and is SERVING."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"grpc_load: asr-server exited ({self.process.returncode}); see {self.log_path}")
            text = self.log_path.read_text(errors="replace")
            port = re.search(r"gRPC listening on [\d.]+:(\d+)", text)
            metrics = re.search(r"metrics on http://[\d.]+:(\d+)/metrics", text)
            if port and metrics:
                self.port, self.metrics_port = int(port.group(1)), int(metrics.group(1))
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"grpc_load: asr-server did not start in {timeout_s:.0f} s; see {self.log_path}")
        wait_serving(f"{LOOPBACK}:{self.port}", max(1.0, deadline - time.monotonic()))

    def target(self) -> Target:
        """Where the started server listens, its metrics and its process (for CPU figures)."""
        return Target(
            f"{LOOPBACK}:{self.port}",
            f"http://{LOOPBACK}:{self.metrics_port}/metrics",
            self.process.pid if self.process else None,
            "",
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (the server drains), then SIGKILL after ``timeout_s``; only our own process."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def wait_serving(target: str, timeout_s: float) -> None:
    """Poll gRPC health (at most ``timeout_s``) until the Recognizer service is SERVING."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="asr.v1.Recognizer")
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(request, timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.3)
    raise SystemExit(f"grpc_load: {target} not SERVING after {timeout_s:.0f} s")


def loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- one stream -------------------------------------------------------------------------------
@dataclass
class StreamResult:
    """What one client saw; times are ``time.monotonic()`` seconds."""

    index: int
    audio_seconds: float = 0.0  # audio sent
    completed: bool = False
    error: str | None = None
    responses: int = 0
    partials: int = 0
    finals: int = 0
    transcript: str = ""
    result_latencies: list[float] = field(default_factory=list)
    # (audio_processed seconds, receive time, carries results) of every response.
    observations: list[tuple[float, float, bool]] = field(default_factory=list)
    half_close_at: float | None = None
    last_response_at: float | None = None
    finished_at: float | None = None

    @property
    def final_latency(self) -> float | None:
        if not self.completed or self.half_close_at is None:
            return None
        end = self.last_response_at
        if end is None or end < self.half_close_at:
            end = self.finished_at
        return None if end is None else end - self.half_close_at


def _seconds(duration: object) -> float:
    return duration.seconds + duration.nanos / 1e9  # type: ignore[attr-defined]


def connection(target: str) -> grpc.aio.Channel:
    """An asyncio channel with a TCP connection of its own (gRPC shares one between the channels
    of a process to the same address unless each has its own subchannel pool)."""
    return grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


async def run_stream(
    channel: grpc.aio.Channel,
    index: int,
    audio: PcmAudio,
    *,
    model: str,
    chunk_ms: float,
    speed: float,
    start_delay_s: float,
    timeout_s: float,
    lookahead_s: float,
) -> StreamResult:
    """Stream ``audio`` paced at ``speed`` times real time; match responses to chunks."""
    result = StreamResult(index)
    chunk_bytes = chunk_size_bytes(audio.sample_rate, audio.channels, chunk_ms)
    bytes_per_second = audio.sample_rate * audio.channels * BYTES_PER_SAMPLE
    chunks = list(split_chunks(audio.data, chunk_bytes))
    ends: list[float] = []  # audio time (s) at the end of each chunk
    sent_at: list[float] = []  # when each chunk was handed to gRPC
    total = 0
    for chunk in chunks:
        total += len(chunk)
        ends.append(total / bytes_per_second)

    async def paced_chunks() -> AsyncIterator[bytes]:
        await asyncio.sleep(start_delay_s)
        start = time.monotonic()
        for chunk, end in zip(chunks, ends, strict=True):
            # Like a microphone: a chunk leaves once its end would have been recorded.
            delay = start + end / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at.append(time.monotonic())
            result.audio_seconds = end
            yield chunk
        result.half_close_at = time.monotonic()

    config = recognition_config(audio.sample_rate, audio_channel_count=audio.channels, model=model)
    try:
        async with AsyncAsrClient(channel=channel) as client:
            async for response in client.streaming_recognize(paced_chunks(), config, timeout=timeout_s):
                now = time.monotonic()
                result.responses += 1
                result.last_response_at = now
                processed = _seconds(response.audio_processed)
                if not processed and response.results:
                    processed = max(_seconds(r.end_time) for r in response.results)
                for item in response.results:
                    if item.is_final:
                        result.finals += 1
                        if item.alternatives and item.alternatives[0].transcript:
                            text = item.alternatives[0].transcript
                            result.transcript = f"{result.transcript} {text}".strip()
                    else:
                        result.partials += 1
                result.observations.append((processed, now, bool(response.results)))
        result.completed = result.half_close_at is not None
        if not result.completed:
            result.error = "stream ended before all audio was sent"
    except grpc.aio.AioRpcError as error:
        result.error = f"{error.code().name}: {error.details()}"
    except asyncio.CancelledError:
        result.error = "cancelled at the duration limit"
    finally:
        result.finished_at = time.monotonic()
    # A finished stream's last response is the flush's final result (the final latency).
    observed = result.observations[:-1] if result.completed else result.observations
    for processed, received, has_results in observed:
        if not has_results or processed <= 0 or processed + lookahead_s > ends[-1] + 1e-6:
            continue
        covering = bisect.bisect_left(ends, processed - 1e-6)
        if covering < len(sent_at):
            result.result_latencies.append(received - sent_at[covering])
    return result


# -- one load level ---------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """``q``-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class Target:
    """Where the server is and how to observe it."""

    address: str
    metrics_url: str | None
    pid: int | None
    model: str


async def run_level(
    target: Target, streams: int, audios: list[PcmAudio], args: argparse.Namespace, lookahead_s: float
) -> dict[str, object]:
    """N concurrent streams; client latencies plus server metric and CPU deltas."""
    before = scrape(target.metrics_url, target.model)
    cpu_before = cpu_seconds(target.pid) if target.pid else None
    client_cpu_before = own_cpu_seconds()
    started = time.monotonic()
    period = args.chunk_ms / 1000.0 / args.speed
    channels = [connection(target.address) for _ in range(args.connections or min(streams, 16))]
    tasks = [
        asyncio.create_task(
            run_stream(
                channels[index % len(channels)],
                index,
                audios[index % len(audios)],
                model=args.model,
                chunk_ms=args.chunk_ms,
                speed=args.speed,
                start_delay_s=period * index / streams,
                timeout_s=args.duration_limit,
                lookahead_s=lookahead_s,
            )
        )
        for index in range(streams)
    ]
    _done, pending = await asyncio.wait(tasks, timeout=args.duration_limit)
    for task in pending:
        task.cancel()
    results: list[StreamResult] = []
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            results.append(await task)
    wall = time.monotonic() - started
    for channel in channels:
        await channel.close()
    # Let the server's last step of every stream land in its counters (bounded wait).
    for _ in range(20):
        after = scrape(target.metrics_url, target.model)
        if after.get("asr_active_streams", 0.0) <= 0:
            break
        await asyncio.sleep(0.25)
    cpu_after = cpu_seconds(target.pid) if target.pid else None
    client_cpu = own_cpu_seconds() - client_cpu_before

    completed = [r for r in results if r.completed]
    latencies = [x for r in results for x in r.result_latencies]
    finals = [x for r in completed if (x := r.final_latency) is not None]
    audio_seconds = sum(r.audio_seconds for r in results)
    server_cpu = cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
    step_sum = after.get("asr_step_seconds_sum", 0.0) - before.get("asr_step_seconds_sum", 0.0)
    model_audio = after.get("asr_audio_seconds_total", 0.0) - before.get("asr_audio_seconds_total", 0.0)
    errors: dict[str, int] = {}
    for r in results:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "streams": streams,
        "connections": len(channels),
        "completed": len(completed),
        "errors": errors,
        "wall_seconds": wall,
        "audio_seconds": audio_seconds,
        "responses": sum(r.responses for r in results),
        "partials": sum(r.partials for r in results),
        "finals": sum(r.finals for r in results),
        "streams_with_text": sum(1 for r in completed if r.transcript),
        "result_latency": {
            "samples": len(latencies),
            "mean_s": mean(latencies),
            "p50_s": percentile(latencies, 50),
            "p95_s": percentile(latencies, 95),
            "max_s": max(latencies) if latencies else None,
        },
        "final_latency": {
            "samples": len(finals),
            "mean_s": mean(finals),
            "p50_s": percentile(finals, 50),
            "p95_s": percentile(finals, 95),
            "max_s": max(finals) if finals else None,
        },
        "server": {
            "model_steps": after.get("asr_step_seconds_count", 0.0) - before.get("asr_step_seconds_count", 0.0),
            "batch_size_mean": histogram_mean(before, after, "asr_batch_size"),
            "step_seconds_mean": histogram_mean(before, after, "asr_step_seconds"),
            "queue_wait_seconds_mean": histogram_mean(before, after, "asr_queue_wait_seconds"),
            "partial_latency_seconds_mean": histogram_mean(before, after, "asr_partial_latency_seconds"),
            "real_time_factor_run": step_sum / model_audio if model_audio > 0 else None,
            "audio_seconds_through_model": model_audio,
        }
        if target.metrics_url
        else None,
        "server_cpu_seconds": server_cpu,
        "server_cpu_seconds_per_audio_second": server_cpu / audio_seconds if server_cpu and audio_seconds else None,
        "server_cpu_cores_busy": server_cpu / wall if server_cpu is not None and wall > 0 else None,
        "client_cpu_seconds": client_cpu,
        "sample_transcripts": [r.transcript for r in completed[:2]],
    }


# -- report -----------------------------------------------------------------------------------
def _ms(value: object) -> str:
    return "-" if value is None else f"{float(value) * 1000:.0f}"  # type: ignore[arg-type]


def _num(value: object, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def print_table(runs: list[dict[str, object]], title: str) -> None:
    table = Table(
        title=title,
        caption="lat: chunk sent -> result covering it; final: half-close -> final result (ms). batch, step ms, "
        "RTF: server metrics. CPU/audio s: server CPU seconds per second of audio; cores: server CPU s per wall s.",
    )
    for column in (
        "N", "done", "audio s", "lat mean", "lat p50", "lat p95", "lat n", "final mean", "final p95",
        "batch", "step ms", "RTF run", "CPU/audio s", "cores",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for run in runs:
        latency: dict = run["result_latency"]  # type: ignore[assignment]
        final: dict = run["final_latency"]  # type: ignore[assignment]
        server: dict = run["server"] or {}  # type: ignore[assignment]
        table.add_row(
            str(run["streams"]),
            f"{run['completed']}/{run['streams']}",
            f"{run['audio_seconds']:.0f}",
            _ms(latency["mean_s"]),
            _ms(latency["p50_s"]),
            _ms(latency["p95_s"]),
            str(latency["samples"]),
            _ms(final["mean_s"]),
            _ms(final["p95_s"]),
            _num(server.get("batch_size_mean")),
            _num(None if server.get("step_seconds_mean") is None else server["step_seconds_mean"] * 1000, 1),
            _num(server.get("real_time_factor_run"), 3),
            _num(run["server_cpu_seconds_per_audio_second"], 3),
            _num(run["server_cpu_cores_busy"]),
        )
    console.print(table)


def machine() -> dict[str, object]:
    model_name = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model_name,
        "platform": platform.platform(),
        "loadavg_at_end": load,
        # Inherited by a started server: torch's intra-op threads (unset: one per core).
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="checkpoint to serve (default: the server's default, the bundled model)",
    )
    parser.add_argument(
        "--server", default=None, help="HOST:PORT of a running server on loopback instead of starting one"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="with --server: its Prometheus port (no server-side figures without it)",
    )
    parser.add_argument("--server-pid", type=int, default=None, help="with --server: its process id, for CPU figures")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra asr-server flag for the started server, e.g. --server-arg=--max-batch-size=16",
    )
    parser.add_argument("--model", default="", help="model name requested by the streams (default: server default)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="TCP connections the N streams share, stream i on connection i mod C (default: min(N, 16)); "
        "a --workers server spreads connections over its processes",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="pace, times real time (1.0: live)")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--audio", type=Path, nargs="+", default=None, help="speech files (default: espeak-ng)")
    parser.add_argument(
        "--duration-limit",
        type=float,
        default=60.0,
        help="seconds one load level may take; streams still open are cancelled",
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between load levels")
    capacity = parser.add_argument_group("capacity (issue 17)")
    capacity.add_argument(
        "--capacity-search",
        action="store_true",
        help="after the --streams levels, find the largest N whose streams all complete with result "
        "latency p95 <= --p95-limit (doubling from --capacity-start, then bisection)",
    )
    capacity.add_argument("--p95-limit", type=float, default=0.6, help="seconds (default: %(default)s)")
    capacity.add_argument("--capacity-start", type=int, default=8)
    capacity.add_argument("--capacity-max", type=int, default=256)
    capacity.add_argument(
        "--unbatched-at",
        type=int,
        default=None,
        metavar="N",
        help="also run N streams on a second started server with --max-batch-size=1 and report the "
        "unbatched/batched ratio of server CPU per audio second (N joins the --streams levels)",
    )
    capacity.add_argument(
        "--arithmetic",
        action="store_true",
        help="report the arithmetic limit (matmul FLOP/s x cores over the model's FLOPs per stream-second, "
        "benchmarks/arithmetic.py) and the fraction of it the capacity reaches",
    )
    parser.add_argument("--report", type=Path, default=Path("reports/grpc_load.json"))
    args = parser.parse_args(argv)
    if args.speed <= 0 or args.chunk_ms <= 0 or args.duration_limit <= 0:
        parser.error("--speed, --chunk-ms and --duration-limit must be positive")
    if any(n < 1 for n in args.streams) or len(args.streams) > 32:
        parser.error("--streams: 1 to 32 levels, each at least 1")
    if args.connections is not None and args.connections < 1:
        parser.error("--connections must be at least 1")
    if args.server is not None:
        host = args.server.rsplit(":", 1)[0]
        if not loopback_host(host):
            parser.error("--server must be on loopback (127.0.0.1, ::1 or localhost)")
        if args.model_dir is not None or args.server_arg:
            parser.error("--model-dir and --server-arg apply to a started server, not to --server")
    elif args.metrics_port is not None or args.server_pid is not None:
        parser.error("--metrics-port and --server-pid apply to --server only")
    if args.unbatched_at is not None:
        if args.server is not None:
            parser.error("--unbatched-at starts its own servers: not with --server")
        if args.unbatched_at < 1:
            parser.error("--unbatched-at must be at least 1")
        if args.unbatched_at not in args.streams:
            args.streams = sorted([*args.streams, args.unbatched_at])
    if args.p95_limit <= 0 or not 1 <= args.capacity_start <= args.capacity_max:
        parser.error("--p95-limit must be positive and 1 <= --capacity-start <= --capacity-max")
    if args.arithmetic and args.server is not None and args.model_dir is None:
        parser.error("--arithmetic with --server needs --model-dir (the served model's directory)")
    return args


def holds(run: dict[str, object], p95_limit_s: float) -> bool:
    """Whether a load level kept up: every stream completed, and result latency p95 within the limit."""
    p95 = run["result_latency"]["p95_s"]  # type: ignore[index]
    return run["completed"] == run["streams"] and p95 is not None and p95 <= p95_limit_s


def next_capacity_probe(passed: int | None, failed: int | None, start: int, maximum: int) -> int | None:
    """The next N to try (None: done): double from ``start`` until a level fails or ``maximum`` holds,
    then bisect between the largest N that held and the smallest that failed, to within 1/16 of it."""
    if passed is None:
        return start if failed is None else (None if failed <= 1 else max(1, failed // 2))
    if failed is None:
        return None if passed >= maximum else min(2 * passed, maximum)
    gap = failed - passed
    if gap <= max(1, passed // 16):
        return None
    return passed + gap // 2


async def capacity_search(
    target: Target, audios: list[PcmAudio], args: argparse.Namespace, lookahead_s: float
) -> dict[str, object]:
    """The largest N that holds (``holds``), with every level it ran."""
    passed: int | None = None
    failed: int | None = None
    levels = []
    while (streams := next_capacity_probe(passed, failed, args.capacity_start, args.capacity_max)) is not None:
        await asyncio.sleep(args.pause)
        run = await run_level(target, streams, audios, args, lookahead_s)
        ok = holds(run, args.p95_limit)
        p95 = run["result_latency"]["p95_s"]  # type: ignore[index]
        console.print(
            f"capacity probe N={streams}: {run['completed']}/{streams} completed, p95 "
            f"{_ms(p95)} ms -> {'holds' if ok else 'fails'}"
        )
        levels.append(run)
        if ok:
            passed = streams
        else:
            failed = streams
    return {"p95_limit_s": args.p95_limit, "streams": passed or 0, "levels": levels}


async def benchmark(
    args: argparse.Namespace, audio_paths: list[Path], target: Target
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Every load level in turn against ``target``; returns the model's description and the runs."""
    audios = [read_audio_file(path) for path in audio_paths]
    if any(audio.duration_seconds <= 0 for audio in audios):
        raise SystemExit("grpc_load: an audio file is empty")
    async with AsyncAsrClient(target.address) as client:
        models = await client.list_models(timeout=10)
    chosen = [m for m in models if (m.name == args.model if args.model else m.is_default)]
    if not chosen:
        raise SystemExit(f"grpc_load: model {args.model!r} not served (have {[m.name for m in models]})")
    info: asr_pb2.ModelInfo = chosen[0]
    target.model = info.name
    model_info: dict[str, object] = {
        "name": info.name,
        "num_parameters": info.num_parameters,
        "chunk_ms": info.chunk_ms,
        "latency_ms": info.latency_ms,
    }
    console.print(
        f"model {info.name} ({info.num_parameters} parameters, chunk {info.chunk_ms} ms, "
        f"algorithmic latency {info.latency_ms} ms); audio: " + ", ".join(f"{a.duration_seconds:.1f} s" for a in audios)
    )
    runs = []
    for index, streams in enumerate(args.streams):
        if index:
            await asyncio.sleep(args.pause)
        lookahead_s = max(0, info.latency_ms - info.chunk_ms) / 1000.0
        run = await run_level(target, streams, audios, args, lookahead_s)
        console.print(
            f"N={streams}: {run['completed']}/{streams} completed in {run['wall_seconds']:.1f} s"
            + (f", errors {run['errors']}" if run["errors"] else "")
        )
        runs.append(run)
    if args.capacity_search:
        lookahead_s = max(0, info.latency_ms - info.chunk_ms) / 1000.0
        model_info["capacity"] = await capacity_search(target, audios, args, lookahead_s)
    return model_info, runs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server: ServerProcess | None = None
    with tempfile.TemporaryDirectory(prefix="grpc-load-") as tmp:
        audio_paths = args.audio or synthesize(list(DEFAULT_SENTENCES), Path(tmp))
        try:
            if args.server is None:
                log_path = args.report.with_suffix(".server.log")
                server = ServerProcess(args.model_dir, started_max_streams(args), list(args.server_arg), log_path)
                console.print(f"starting asr-server ({args.model_dir or 'its default model'}), log {log_path}")
                server.start(args.startup_timeout)
                target = server.target()
            else:
                host = args.server.rsplit(":", 1)[0]
                metrics_url = f"http://{host}:{args.metrics_port}/metrics" if args.metrics_port else None
                target = Target(args.server, metrics_url, args.server_pid, "")
            model_info, runs = asyncio.run(benchmark(args, audio_paths, target))
        finally:
            if server is not None:
                server.stop()
        unbatched = None
        if args.unbatched_at is not None:
            unbatched = run_unbatched(args, audio_paths, runs)
    capacity: dict | None = model_info.pop("capacity", None)  # type: ignore[assignment]
    arithmetic = None
    if args.arithmetic:
        from arithmetic import arithmetic_limit  # benchmarks/arithmetic.py: torch, only when asked

        arithmetic = arithmetic_limit(args.model_dir or _default_model_dir())
        if capacity is not None:
            arithmetic["fraction_of_limit"] = capacity["streams"] / arithmetic["limit_streams"]
        console.print(f"arithmetic limit: {arithmetic}")
    print_table(runs, f"gRPC load, speed {args.speed}x, {args.chunk_ms:.0f} ms chunks")
    report = {
        "benchmark": "grpc_load",
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "model": model_info,
        "model_dir": None if args.server else str(args.model_dir or "default"),
        "server": args.server or "started",
        "speed": args.speed,
        "chunk_ms": args.chunk_ms,
        "audio": [str(p) for p in args.audio] if args.audio else [f"espeak-ng: {s}" for s in DEFAULT_SENTENCES],
        "machine": machine(),
        "cpu_source": _cpu_source(),
        "runs": runs,
        "capacity": capacity,
        "batched_unbatched": unbatched,
        "arithmetic": arithmetic,
    }
    if capacity is not None:
        console.print(f"capacity: {capacity['streams']} streams hold p95 <= {capacity['p95_limit_s']} s")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"report: {args.report}")


def started_max_streams(args: argparse.Namespace) -> int:
    """``--max-streams`` of the started server: every level run, and every level the capacity
    search may probe (up to ``--capacity-max``), must be admitted, or refusals would end the search."""
    return max(64, *args.streams, args.capacity_max if args.capacity_search else 0)


def run_unbatched(args: argparse.Namespace, audio_paths: list[Path], runs: list[dict[str, object]]) -> dict:
    """N streams on a second started server that steps one stream at a time; the ratio of server CPU
    per audio second, unbatched over batched (the batched figure: this run's level N)."""
    streams = args.unbatched_at
    batched = next(run for run in runs if run["streams"] == streams)
    log_path = args.report.with_suffix(".unbatched.server.log")
    server = ServerProcess(args.model_dir, max(64, streams), [*args.server_arg, "--max-batch-size=1"], log_path)
    console.print(f"starting an unbatched asr-server (--max-batch-size=1), log {log_path}")
    try:
        server.start(args.startup_timeout)
        target = server.target()
        _, unbatched_runs = asyncio.run(benchmark(_with_streams(args, [streams]), audio_paths, target))
    finally:
        server.stop()
    unbatched = unbatched_runs[0]
    cost = batched["server_cpu_seconds_per_audio_second"]
    unbatched_cost = unbatched["server_cpu_seconds_per_audio_second"]
    ratio = unbatched_cost / cost if cost and unbatched_cost else None  # type: ignore[operator]
    console.print(f"N={streams}: unbatched/batched server CPU per audio second = {_num(ratio)}")
    return {"streams": streams, "ratio": ratio, "batched": batched, "unbatched": unbatched}


def _with_streams(args: argparse.Namespace, streams: list[int]) -> argparse.Namespace:
    """``args`` for one more run of just these levels (no capacity search)."""
    return argparse.Namespace(**{**vars(args), "streams": streams, "capacity_search": False})


def _default_model_dir() -> Path:
    from server.model.checkpoint import DEFAULT_MODEL_DIR

    return Path(DEFAULT_MODEL_DIR)


def _cpu_source() -> str:
    try:
        import psutil  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "/proc/PID/stat"
    return "psutil"


if __name__ == "__main__":
    main()
