"""One huge client message against a real ``asr-server``: does it stall others, does it bloat memory?

Starts an ``asr-server`` subprocess on loopback (``grpc_load.ServerProcess``), then opens one
StreamingRecognize call that sends a single audio message of ``--megabytes`` MiB of 8-kHz MULAW
(16 MiB, the receive limit's order, is about 35 minutes of audio; speech synthesized with
espeak-ng, repeated), keeps the call open for ``--seconds`` and cancels it. Meanwhile:

* a health prober calls grpc.health.v1 Check every ``--probe-ms`` on its own channel; its latency
  is how long the server's event loop (which also serves every other stream's responses) was
  busy when the probe arrived;
* a sampler reads the server's VmRSS from /proc every 50 ms.

Printed and written to the JSON report: health-check latency (p50, p99, max) before and during
the message, the server's RSS before the message and at its peak, and how much of the message's
audio the model got through in the window.

Usage:
    python benchmarks/large_message.py [--model-dir DIR] [--megabytes 16] [--seconds 30]
        [--server-arg=--beam-size=1 ...] [--report reports/large_message.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import soundfile as sf
import soxr
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))
from grpc_load import LOOPBACK, ServerProcess, machine, percentile, synthesize  # noqa: E402

SENTENCES = [
    "please call me back tomorrow morning about the delivery",
    "the meeting has been moved to half past three on thursday",
]


def mulaw_encode(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> G.711 mu-law bytes (the continuous companding formula)."""
    x = np.clip(samples, -1.0, 1.0)
    magnitude = np.log1p(255.0 * np.abs(x)) / np.log1p(255.0)
    code = np.round(magnitude * 127.0).astype(np.int32)
    # Sign bit set for positive samples, then all bits inverted (G.711's transmitted form).
    return (~((np.where(x >= 0, 0x80, 0x00) | code) & 0xFF) & 0xFF).astype(np.uint8).tobytes()


def message_audio(megabytes: float, work_dir: Path) -> bytes:
    """``megabytes`` MiB of 8-kHz mu-law speech."""
    pieces = []
    for path in synthesize(SENTENCES, work_dir):
        samples, rate = sf.read(path, dtype="float32")
        pieces.append(soxr.resample(samples, rate, 8000).astype(np.float32))
        pieces.append(np.zeros(4000, np.float32))  # 0.5 s pause between sentences
    speech = mulaw_encode(np.concatenate(pieces))
    size = int(megabytes * 1024 * 1024)
    return (speech * (size // len(speech) + 1))[:size]


class Prober(threading.Thread):
    """Health checks every ``interval_s``: (send time, latency in seconds)."""

    def __init__(self, target: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            while not self.stop.is_set():
                sent = time.monotonic()
                with contextlib.suppress(grpc.RpcError):
                    stub.Check(request, timeout=30)
                self.samples.append((sent, time.monotonic() - sent))
                self.stop.wait(max(0.0, self.interval_s - (time.monotonic() - sent)))


class RssSampler(threading.Thread):
    """The server's resident set size every 50 ms: (time, bytes)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.samples.append((time.monotonic(), int(line.split()[1]) * 1024))
            self.stop.wait(0.05)


def send_message(target: str, audio: bytes, seconds: float) -> tuple[float, float]:
    """The big call: config, one message, open for ``seconds``, cancelled. Returns (time the message
    was handed to gRPC, audio seconds the server reported processed)."""
    config = asr_pb2.StreamingRecognitionConfig(
        config=asr_pb2.RecognitionConfig(encoding=asr_pb2.MULAW, sample_rate_hertz=8000), interim_results=True
    )
    handed = threading.Event()
    release = threading.Event()
    sent_at = [0.0]

    def requests():  # type: ignore[no-untyped-def]
        yield asr_pb2.StreamingRecognizeRequest(streaming_config=config)
        sent_at[0] = time.monotonic()
        handed.set()
        yield asr_pb2.StreamingRecognizeRequest(audio_content=audio)
        release.wait(seconds + 60)

    processed = 0.0
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", len(audio) + 1024)]) as channel:
        call = asr_pb2_grpc.RecognizerStub(channel).StreamingRecognize(requests(), timeout=seconds + 120)
        timer = threading.Timer(seconds, call.cancel)
        timer.start()
        try:
            for response in call:
                processed = response.audio_processed.seconds + response.audio_processed.nanos / 1e9
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise
        finally:
            timer.cancel()
            release.set()
    handed.wait(1)
    return sent_at[0], processed


def summary(latencies: list[float]) -> dict[str, float | None]:
    return {
        "count": len(latencies),
        "p50_ms": None if not latencies else round(1000 * (percentile(latencies, 50) or 0.0), 1),
        "p99_ms": None if not latencies else round(1000 * (percentile(latencies, 99) or 0.0), 1),
        "max_ms": None if not latencies else round(1000 * max(latencies), 1),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="model to serve (default: the bundled default)")
    parser.add_argument("--megabytes", type=float, default=16.0, help="size of the one audio message, MiB")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the big call stays open")
    parser.add_argument("--probe-ms", type=float, default=20.0, help="health-check interval")
    parser.add_argument("--server-arg", action="append", default=[], help="extra asr-server argument (repeatable)")
    parser.add_argument("--report", type=Path, default=Path("reports/large_message.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        audio = message_audio(args.megabytes, Path(work))
        server = ServerProcess(args.model_dir, 4, args.server_arg, Path(work) / "server.log")
        server.start(timeout_s=120)
        assert server.process is not None and server.port is not None
        target = f"{LOOPBACK}:{server.port}"
        try:
            prober, rss = Prober(target, args.probe_ms / 1000), RssSampler(server.process.pid)
            prober.start()
            rss.start()
            time.sleep(3)  # the idle baseline
            sent_at, processed = send_message(target, audio, args.seconds)
            ended_at = time.monotonic()
            prober.stop.set()
            rss.stop.set()
            prober.join(35)
            rss.join(5)
        finally:
            server.stop()
    before = [latency for sent, latency in prober.samples if sent < sent_at]
    during = [latency for sent, latency in prober.samples if sent_at <= sent <= ended_at]
    rss_before = [size for when, size in rss.samples if when < sent_at]
    rss_during = [size for when, size in rss.samples if sent_at <= when <= ended_at]
    result = {
        "message_bytes": len(audio),
        "message_audio_seconds": len(audio) / 8000,
        "window_seconds": args.seconds,
        "audio_seconds_processed_in_window": round(processed, 1),
        "health_latency_before": summary(before),
        "health_latency_during": summary(during),
        "rss_before_mb": round(max(rss_before) / 2**20, 1) if rss_before else None,
        "rss_peak_mb": round(max(rss_during) / 2**20, 1) if rss_during else None,
        "server_args": args.server_arg,
        "machine": machine(),
    }
    if rss_before and rss_during:
        result["rss_growth_mb"] = round((max(rss_during) - max(rss_before)) / 2**20, 1)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(result, indent=2) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
