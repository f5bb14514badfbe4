"""Soak test of the real gRPC service: N live streams, kept open for M minutes, and the server's memory.

Starts an ``asr-server`` on 127.0.0.1 (free ports, like benchmarks/grpc_load.py, whose helpers
it imports) and keeps ``--streams`` N ``StreamingRecognize`` calls open at all times for
``--minutes`` M: each of N loops opens a stream, and when it ends opens the next one, on its own
grpc.aio channel. Usage:
    python benchmarks/soak.py [--streams 8] [--minutes 10] [--seed 0] [--model-dir DIR]
        [--server-arg=--max-batch-size=16 ...] [--report reports/soak.json]

A stream: the configuration (LINEAR16 at the speech's rate, interim results), then 1 to 3 of
the sentences synthesized once at start with ``espeak-ng`` (grpc_load's four), with 0.2-1.0 s
of silence before each, in chunks of random length (``--chunk-ms-min`` to ``--chunk-ms-max``,
default 20-500 ms), each sent when its end would have been recorded (real time). Then, drawn
per stream (``--seed``):

* finish (most): half-close and wait for the last response;
* cancel (``--cancel-prob``): after a random chunk, the client cancels the call;
* reconnect (``--reconnect-prob``): after a random chunk, the client closes its channel (the
  connection goes away under the stream, as when a network drops) and the loop goes on with a
  new channel.

At the end of M minutes no new stream starts; streams in progress run to their end.

What is reported (and printed in short):

* streams: started, completed (ended OK after the half-close with at least one final result),
  cancelled by us, reconnected by us (neither is an error), errors by gRPC status code (with a
  few messages), and lost: started, not ended by us, and neither a final nor an error, that is
  ended OK without a final, or no status within ``--final-timeout`` seconds of the half-close,
  or stalled while sending (the audio not all sent within its duration plus
  ``--final-timeout``); the client then cancels it.
* server memory: VmRSS (and thread and open-file counts) of the server process from
  /proc/PID/status every ``--rss-interval`` seconds, as a time series, and its growth: the mean
  over the last minute of the M minutes against the mean over the first minute after
  ``--warmup`` seconds, in percent. Runs shorter than warm-up plus two minutes use a quarter of
  the run as warm-up and split the rest into two equal windows; the report says which.
* result latency per minute (p50, p95), as grpc_load defines it: chunk sent -> the response
  covering it. Each response's ``audio_processed`` P is matched to the first chunk whose end is
  at or after P; latency is receive time minus that chunk's send time. Responses without
  results, a completed stream's last response, and responses needing audio past the end (P
  plus the model's lookahead beyond the audio) are left out. With chunks of up to 500 ms the
  figure includes waiting for the rest of a model window within the chunk. The final latency
  (half-close -> last response of a completed stream) per minute too. Minutes are counted from
  the start of the soak by receive time (for the final latency: by half-close time).
* server side at the end: ``asr_active_streams`` (should be back to 0), ``asr_errors_total`` by
  code (and ``asr_cancellations_total``, the client cancels), CPU seconds of the server process.

The JSON report (default ``reports/soak.json``) holds all of this plus the model, machine and
arguments; the server's log goes next to it (``.server.log``). All traffic goes to loopback;
the run is bounded by ``--minutes`` plus the last streams' audio and ``--final-timeout``.

An error that the server sends while the client is still writing may reach a grpc.aio client
as INTERNAL "Internal error from Core" instead of its own code (grpc/grpc#36066); such an error
is still an error of the server's (it ended a stream that should have gone on).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from asr_client import PcmAudio, asr_pb2, read_audio_file
from asr_client.audio import BYTES_PER_SAMPLE
from google.protobuf.duration_pb2 import Duration
from prometheus_client.parser import text_string_to_metric_families

if __package__ in (None, ""):
    # Run as a script (python benchmarks/soak.py): the repository root makes the sibling
    # benchmark importable as benchmarks.grpc_load, the name mypy checks it under.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.grpc_load import (  # noqa: E402
    DEFAULT_SENTENCES,
    LOOPBACK,
    ServerProcess,
    cpu_seconds,
    machine,
    mean,
    percentile,
    scrape,
    synthesize,
)

STREAM_METHOD = "/asr.v1.Recognizer/StreamingRecognize"
MAX_EXAMPLES = 20  # error messages and lost streams kept per kind in the report


# -- what one stream does -----------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """A stream's audio in chunks, and what the client does: "finish", "cancel" or "reconnect"."""

    rate: int
    chunks: list[bytes]
    ends: list[float]  # audio seconds at the end of each chunk
    action: str
    cut_after: int  # for cancel / reconnect: the chunk after which the client ends the stream

    @property
    def duration(self) -> float:
        return self.ends[-1] if self.ends else 0.0


def plan_stream(rng: random.Random, sentences: list[PcmAudio], args: argparse.Namespace) -> Plan:
    """1 to 3 sentences with silence before each, cut into chunks of random length."""
    rate = sentences[0].sample_rate
    pieces = []
    for sentence in rng.choices(sentences, k=rng.randint(1, 3)):
        pieces.append(bytes(int(rate * rng.uniform(0.2, 1.0)) * BYTES_PER_SAMPLE))
        pieces.append(sentence.data)
    audio = b"".join(pieces)
    chunks, ends, position = [], [], 0
    while position < len(audio):
        frames = max(1, int(rate * rng.uniform(args.chunk_ms_min, args.chunk_ms_max) / 1000))
        chunk = audio[position : position + frames * BYTES_PER_SAMPLE]
        position += len(chunk)
        chunks.append(chunk)
        ends.append(position / (rate * BYTES_PER_SAMPLE))
    roll = rng.random()
    action = (
        "cancel"
        if roll < args.cancel_prob
        else "reconnect"
        if roll < args.cancel_prob + args.reconnect_prob
        else "finish"
    )
    return Plan(rate, chunks, ends, action, rng.randrange(len(chunks)))


@dataclass
class StreamRecord:
    """What the client saw of one stream; times are seconds since the start of the soak."""

    number: int
    loop: int
    started: float
    action: str
    audio_seconds: float = 0.0
    outcome: str = "running"  # completed | cancelled | reconnected | error | lost
    code: str | None = None  # the status code of an error
    details: str = ""
    lost_reason: str = ""
    responses: int = 0
    finals: int = 0
    half_closed: float | None = None
    last_response: float | None = None
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (received, latency)


def _seconds(duration: Duration) -> float:
    return float(duration.seconds + duration.nanos / 1e9)


# -- the soak -------------------------------------------------------------------------------------
class Soak:
    """N loops of streams against ``target``, and the RSS sampler of the server process."""

    def __init__(
        self, target: str, pid: int | None, sentences: list[PcmAudio], lookahead_s: float, args: argparse.Namespace
    ):
        self.target = target
        self.pid = pid
        self.sentences = sentences
        self.lookahead_s = lookahead_s
        self.args = args
        self.records: list[StreamRecord] = []
        self.samples: list[dict[str, float]] = []
        self.t0 = 0.0
        self.end = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> float:
        """Run the loops and the sampler; returns the wall seconds including the last streams."""
        self.t0 = time.monotonic()
        self.end = self.args.minutes * 60.0
        stop = asyncio.Event()
        sampler = asyncio.create_task(self._sample(stop))
        await asyncio.gather(*(self._loop(index) for index in range(self.args.streams)))
        stop.set()
        await sampler
        return self.now()

    async def _sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.pid is not None and (sample := process_sample(self.pid)) is not None:
                self.samples.append({"t": round(self.now(), 2), **sample})
            with contextlib.suppress(asyncio.TimeoutError):  # the interval passed: sample again
                await asyncio.wait_for(stop.wait(), self.args.rss_interval)

    def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target)

    async def _loop(self, index: int) -> None:
        rng = random.Random(self.args.seed * 1009 + index)
        # Loops start spread over a second, so that the streams' chunks do not arrive in lock-step.
        await asyncio.sleep(index / self.args.streams)
        channel = self._channel()
        try:
            while self.now() < self.end:
                plan = plan_stream(rng, self.sentences, self.args)
                record = StreamRecord(len(self.records), index, self.now(), plan.action)
                self.records.append(record)
                channel = await self._stream(channel, plan, record)
        finally:
            await channel.close()

    async def _stream(self, channel: grpc.aio.Channel, plan: Plan, record: StreamRecord) -> grpc.aio.Channel:
        """One stream; returns the channel the loop goes on with (a new one after a reconnect)."""
        cut = asyncio.Event()
        half_closed = asyncio.Event()
        sent_at: list[float] = []

        async def requests() -> AsyncIterator[asr_pb2.StreamingRecognizeRequest]:
            config = asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR16, sample_rate_hertz=plan.rate)
            yield asr_pb2.StreamingRecognizeRequest(
                streaming_config=asr_pb2.StreamingRecognitionConfig(config=config, interim_results=True)
            )
            start = self.now()
            for index, (chunk, end) in enumerate(zip(plan.chunks, plan.ends, strict=True)):
                # Like a microphone: a chunk leaves once its end would have been recorded.
                delay = start + end - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at.append(self.now())
                record.audio_seconds = end
                yield asr_pb2.StreamingRecognizeRequest(audio_content=chunk)
                if plan.action != "finish" and index == plan.cut_after:
                    cut.set()
                    await asyncio.Event().wait()  # the stream stays open until the client ends it
            record.half_closed = self.now()
            half_closed.set()

        call = channel.stream_stream(
            STREAM_METHOD,
            request_serializer=asr_pb2.StreamingRecognizeRequest.SerializeToString,
            response_deserializer=asr_pb2.StreamingRecognizeResponse.FromString,
        )(requests())
        observations: list[tuple[float, float, bool]] = []
        reader = asyncio.create_task(self._read(call, record, observations))
        channel = await self._supervise(channel, call, reader, plan, record, cut, half_closed)
        self._latencies(record, plan, sent_at, observations)
        return channel

    async def _read(
        self, call: grpc.aio.StreamStreamCall, record: StreamRecord, observations: list[tuple[float, float, bool]]
    ) -> None:
        async for response in call:
            now = self.now()
            record.responses += 1
            record.last_response = now
            processed = _seconds(response.audio_processed)
            if not processed and response.results:
                processed = max(_seconds(r.end_time) for r in response.results)
            record.finals += sum(1 for r in response.results if r.is_final)
            observations.append((processed, now, bool(response.results)))

    async def _supervise(
        self,
        channel: grpc.aio.Channel,
        call: grpc.aio.StreamStreamCall,
        reader: asyncio.Task[None],
        plan: Plan,
        record: StreamRecord,
        cut: asyncio.Event,
        half_closed: asyncio.Event,
    ) -> grpc.aio.Channel:
        """Wait for the stream's end, end it ourselves where planned, classify it."""
        waits = [asyncio.create_task(cut.wait()), asyncio.create_task(half_closed.wait())]
        stall_limit = plan.duration + self.args.final_timeout
        await asyncio.wait([reader, *waits], timeout=stall_limit, return_when=asyncio.FIRST_COMPLETED)
        if not reader.done() and cut.is_set():
            if plan.action == "cancel":
                call.cancel()
            else:  # reconnect: the connection goes away under the stream
                await channel.close(grace=None)
                channel = self._channel()
            await asyncio.wait([reader], timeout=10)
            record.outcome = "cancelled" if plan.action == "cancel" else "reconnected"
        elif not reader.done() and half_closed.is_set():
            await asyncio.wait([reader], timeout=self.args.final_timeout)
        for wait in waits:
            wait.cancel()
        if not reader.done():
            call.cancel()
            await asyncio.wait([reader], timeout=10)
            if record.outcome == "running":
                record.outcome = "lost"
                record.lost_reason = (
                    f"no final and no status within {self.args.final_timeout:g} s of the half-close"
                    if half_closed.is_set()
                    else "stalled: the audio was not all sent within its duration plus --final-timeout"
                )
        if record.outcome == "running":
            self._classify(reader, record)
        return channel

    def _classify(self, reader: asyncio.Task[None], record: StreamRecord) -> None:
        error = None if reader.cancelled() else reader.exception()
        if reader.cancelled():
            record.outcome, record.lost_reason = "lost", "the response reader was cancelled"
        elif isinstance(error, grpc.aio.AioRpcError):
            record.outcome, record.code, record.details = "error", error.code().name, error.details() or ""
        elif error is not None:
            record.outcome, record.code, record.details = "error", type(error).__name__, str(error)
        elif record.half_closed is None:
            record.outcome, record.lost_reason = "lost", "ended OK before all the audio was sent"
        elif record.finals == 0:
            record.outcome, record.lost_reason = "lost", "ended OK without a final result"
        else:
            record.outcome = "completed"

    def _latencies(
        self, record: StreamRecord, plan: Plan, sent_at: list[float], observations: list[tuple[float, float, bool]]
    ) -> None:
        """grpc_load's result latency: chunk sent -> the response whose audio_processed it covers."""
        # A completed stream's last response is the flush's final (the final latency instead).
        observed = observations[:-1] if record.outcome == "completed" else observations
        for processed, received, has_results in observed:
            if not has_results or processed <= 0 or processed + self.lookahead_s > plan.duration + 1e-6:
                continue
            covering = bisect.bisect_left(plan.ends, processed - 1e-6)
            if covering < len(sent_at):
                record.latencies.append((received, received - sent_at[covering]))


# -- the server process ---------------------------------------------------------------------------
def process_sample(pid: int) -> dict[str, float] | None:
    """VmRSS (MB), threads and open file descriptors of process ``pid``; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = float(fields.get("VmRSS", "0 kB").split()[0])
    return {"rss_mb": round(rss_kb / 1024, 1), "threads": float(fields.get("Threads", "0")), "fds": float(fds)}


def server_error_counts(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """``asr_errors_total`` by status code, summed over models and methods; client cancellations
    (``asr_cancellations_total``, not errors) under ``cancelled_by_client``."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback URL)
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "asr_errors_total":
                code = sample.labels.get("code", "?")
                counts[code] = counts.get(code, 0.0) + sample.value
            elif sample.name == "asr_cancellations_total":
                counts["cancelled_by_client"] = counts.get("cancelled_by_client", 0.0) + sample.value
    return counts


async def active_streams_after(url: str, models: list[str], timeout_s: float = 10.0) -> float:
    """``asr_active_streams`` summed over models, once it reaches 0 or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        active = sum(scrape(url, model).get("asr_active_streams", 0.0) for model in models)
        if active <= 0 or time.monotonic() > deadline:
            return active
        await asyncio.sleep(0.25)


# -- figures --------------------------------------------------------------------------------------
def memory_growth(samples: list[dict[str, float]], duration_s: float, warmup_s: float) -> dict[str, object]:
    """Mean RSS over the last minute against the first minute after warm-up, in percent."""
    if duration_s < warmup_s + 120:
        warmup_s = duration_s / 4
    window = min(60.0, (duration_s - warmup_s) / 2)
    first_window = (warmup_s, warmup_s + window)
    last_window = (duration_s - window, duration_s)
    first = [s["rss_mb"] for s in samples if first_window[0] <= s["t"] < first_window[1]]
    last = [s["rss_mb"] for s in samples if last_window[0] <= s["t"] <= last_window[1]]
    first_mean, last_mean = mean(first), mean(last)
    growth = 100.0 * (last_mean - first_mean) / first_mean if first_mean and last_mean is not None else None
    return {
        "first_window_s": first_window,
        "last_window_s": last_window,
        "first_mean_mb": None if first_mean is None else round(first_mean, 1),
        "last_mean_mb": None if last_mean is None else round(last_mean, 1),
        "growth_percent": None if growth is None else round(growth, 2),
        "samples_in_windows": [len(first), len(last)],
    }


def per_minute(points: list[tuple[float, float]]) -> list[dict[str, object]]:
    """p50 / p95 of (time, value) points by minute of time."""
    minutes: dict[int, list[float]] = {}
    for at, value in points:
        minutes.setdefault(int(at // 60), []).append(value)
    return [
        {"minute": m, "samples": len(v), "p50_s": percentile(v, 50), "p95_s": percentile(v, 95)}
        for m, v in sorted(minutes.items())
    ]


def final_latencies(records: list[StreamRecord]) -> list[tuple[float, float]]:
    """(half-close time, half-close -> last response) of the completed streams."""
    return [
        (r.half_closed, r.last_response - r.half_closed)
        for r in records
        if r.outcome == "completed" and r.half_closed is not None and r.last_response is not None
    ]


def stream_counts(records: list[StreamRecord]) -> dict[str, object]:
    outcomes = Counter(r.outcome for r in records)
    errors = Counter(r.code for r in records if r.outcome == "error")
    return {
        "started": len(records),
        "completed": outcomes["completed"],
        "cancelled_by_us": outcomes["cancelled"],
        "reconnected_by_us": outcomes["reconnected"],
        "errors": sum(errors.values()),
        "errors_by_code": dict(errors.most_common()),
        "lost": outcomes["lost"],
        "still_running": outcomes["running"],
        "planned": dict(Counter(r.action for r in records)),
    }


def examples(records: list[StreamRecord]) -> dict[str, object]:
    """A few error messages per code and a few lost streams, for the report."""
    errors: dict[str, list[str]] = {}
    for r in records:
        if r.outcome == "error" and r.code is not None:
            kept = errors.setdefault(r.code, [])
            if len(kept) < MAX_EXAMPLES and r.details not in kept:
                kept.append(r.details[:300])
    lost = [
        {
            "stream": r.number,
            "started_s": round(r.started, 1),
            "action": r.action,
            "reason": r.lost_reason,
            "responses": r.responses,
            "audio_s": round(r.audio_seconds, 2),
        }
        for r in records
        if r.outcome == "lost"
    ]
    return {"error_messages": errors, "lost_streams": lost[:MAX_EXAMPLES]}
    return {"error_messages": errors, "lost_streams": lost}


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=8, help="streams open at all times")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long new streams are started")
    parser.add_argument("--seed", type=int, default=0, help="chunk sizes, sentences, cancels and reconnects")
    parser.add_argument("--report", type=Path, default=Path("reports/soak.json"))
    parser.add_argument("--model-dir", type=Path, default=None, help="checkpoint to serve (default: the bundled model)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra asr-server flag for the started server, e.g. --server-arg=--max-batch-size=16",
    )
    parser.add_argument("--chunk-ms-min", type=float, default=20.0)
    parser.add_argument("--chunk-ms-max", type=float, default=500.0)
    parser.add_argument("--cancel-prob", type=float, default=0.1, help="share of streams the client cancels")
    parser.add_argument("--reconnect-prob", type=float, default=0.05, help="share of streams whose channel is closed")
    parser.add_argument("--final-timeout", type=float, default=30.0, help="seconds after the half-close to the end")
    parser.add_argument("--rss-interval", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first RSS window")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 256 or args.minutes <= 0:
        parser.error("--streams must be 1 to 256 and --minutes positive")
    if not 0 < args.chunk_ms_min <= args.chunk_ms_max:
        parser.error("need 0 < --chunk-ms-min <= --chunk-ms-max")
    if args.cancel_prob < 0 or args.reconnect_prob < 0 or args.cancel_prob + args.reconnect_prob > 1:
        parser.error("--cancel-prob and --reconnect-prob must be non-negative and sum to at most 1")
    if args.rss_interval <= 0 or args.final_timeout <= 0:
        parser.error("--rss-interval and --final-timeout must be positive")
    return args


async def _model(target: str) -> asr_pb2.ModelInfo:
    """The default model's ListModels entry (its lookahead leaves flush responses out of the latency)."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/asr.v1.Recognizer/ListModels",
            request_serializer=asr_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=asr_pb2.ListModelsResponse.FromString,
        )
        models = (await call(asr_pb2.ListModelsRequest(), timeout=10)).models
    return next(m for m in models if m.is_default)


async def soak(args: argparse.Namespace, server: ServerProcess, sentences: list[PcmAudio]) -> dict[str, object]:
    target = f"{LOOPBACK}:{server.port}"
    metrics = f"http://{LOOPBACK}:{server.metrics_port}/metrics"
    pid = server.process.pid if server.process else None
    info = await _model(target)
    print(f"soak: model {info.name}, {args.streams} streams for {args.minutes:g} min, seed {args.seed}")
    cpu_before = cpu_seconds(pid) if pid else None
    runner = Soak(target, pid, sentences, max(0, info.latency_ms - info.chunk_ms) / 1000.0, args)
    wall = await runner.run()
    active = await active_streams_after(metrics, [info.name])
    cpu_after = cpu_seconds(pid) if pid else None
    records = runner.records
    duration = args.minutes * 60.0
    return {
        "model": {"name": info.name, "chunk_ms": info.chunk_ms, "latency_ms": info.latency_ms},
        "wall_seconds": wall,
        "streams": stream_counts(records),
        "audio_seconds_sent": sum(r.audio_seconds for r in records),
        "memory": {
            **memory_growth(runner.samples, duration, args.warmup),
            "start_mb": runner.samples[0]["rss_mb"] if runner.samples else None,
            "end_mb": runner.samples[-1]["rss_mb"] if runner.samples else None,
            "max_mb": max((s["rss_mb"] for s in runner.samples), default=None),
            "samples": runner.samples,
        },
        "result_latency_per_minute": per_minute([p for r in records for p in r.latencies]),
        "final_latency_per_minute": per_minute(final_latencies(records)),
        "server_at_end": {
            "active_streams": active,
            "errors_total_by_code": server_error_counts(metrics),
            "cpu_seconds": cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None,
            "alive": server.process is not None and server.process.poll() is None,
        },
        **examples(records),
    }


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(value) * 1000:.0f}"  # type: ignore[arg-type]


def print_summary(result: dict[str, object]) -> None:
    streams: dict = result["streams"]  # type: ignore[assignment]
    memory: dict = result["memory"]  # type: ignore[assignment]
    server: dict = result["server_at_end"]  # type: ignore[assignment]
    print(
        f"streams: started {streams['started']}, completed {streams['completed']}, cancelled by us "
        f"{streams['cancelled_by_us']}, reconnected by us {streams['reconnected_by_us']}, errors {streams['errors']}"
        f"{' ' + str(streams['errors_by_code']) if streams['errors_by_code'] else ''}, lost {streams['lost']}"
    )
    samples = memory["samples"]
    growth = memory["growth_percent"]
    print(
        f"server RSS: {memory['start_mb']} MB at start, {memory['end_mb']} MB at end, max {memory['max_mb']} MB; "
        f"growth {'-' if growth is None else f'{growth:+.1f}%'} (mean {memory['last_mean_mb']} MB over "
        f"{memory['last_window_s'][0]:.0f}-{memory['last_window_s'][1]:.0f} s vs {memory['first_mean_mb']} MB over "
        f"{memory['first_window_s'][0]:.0f}-{memory['first_window_s'][1]:.0f} s); "
        f"threads {samples[0]['threads']:.0f}->{samples[-1]['threads']:.0f}, "
        f"fds {samples[0]['fds']:.0f}->{samples[-1]['fds']:.0f}"
        if samples
        else "server RSS: no samples"
    )
    for name in ("result_latency_per_minute", "final_latency_per_minute"):
        rows: list = result[name]  # type: ignore[assignment]
        cells = ", ".join(
            f"{row['minute']}: {_ms(row['p50_s'])}/{_ms(row['p95_s'])} (n={row['samples']})" for row in rows
        )
        print(f"{name.replace('_', ' ')} p50/p95 ms: {cells or '-'}")
    print(
        f"server at end: active streams {server['active_streams']}, errors_total {server['errors_total_by_code']}, "
        f"alive {server['alive']}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        sentences = [read_audio_file(path) for path in synthesize(list(DEFAULT_SENTENCES), Path(tmp))]
    if len({s.sample_rate for s in sentences}) != 1 or any(s.channels != 1 for s in sentences):
        raise SystemExit("soak: espeak-ng gave sentences of different rates or channels")
    log_path = args.report.with_suffix(".server.log")
    server = ServerProcess(args.model_dir, max(64, 2 * args.streams), list(args.server_arg), log_path)
    print(f"soak: starting asr-server ({args.model_dir or 'its default model'}), log {log_path}")
    try:
        server.start(args.startup_timeout)
        result = asyncio.run(soak(args, server, sentences))
    finally:
        server.stop()
    print_summary(result)
    report = {
        "benchmark": "soak",
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "audio": [f"espeak-ng: {s}" for s in DEFAULT_SENTENCES],
        "machine": machine(),
        **result,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
