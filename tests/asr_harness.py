"""Helpers of the service tests: a real server on loopback, espeak-ng audio, streaming calls.

Not a test module; the ``test_server_*`` and ``test_client_*`` modules import it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import soundfile as sf
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.api.server import AsrServer, ConnectionPolicy
from server.engine.registry import ModelRegistry

REPO_ROOT = Path(__file__).resolve().parents[1]

requires_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


# -- audio ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 160) -> tuple[bytes, int]:
    """espeak-ng speech as (LINEAR16 mono bytes, sample rate), made at test time."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(words_per_minute), text],
        check=True,
        capture_output=True,
    ).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="int16")
    return samples.astype("<i2").tobytes(), int(rate)


def random_chunks(data: bytes, rng: np.random.Generator, low: int = 1, high: int = 6000) -> Iterator[bytes]:
    """``data`` cut at random even offsets (whole LINEAR16 samples)."""
    position = 0
    while position < len(data):
        size = int(rng.integers(low, high)) * 2
        yield data[position : position + size]
        position += size


def fixed_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for position in range(0, len(data), size):
        yield data[position : position + size]


# -- calls -------------------------------------------------------------------------------------
def config(sample_rate: int, *, interim_results: bool = True, **fields: Any) -> asr_pb2.StreamingRecognitionConfig:
    """A streaming config for LINEAR16 mono (fields override RecognitionConfig fields)."""
    recognition = asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR16, sample_rate_hertz=sample_rate)
    for name, value in fields.items():
        if name == "endpointing":
            recognition.endpointing.CopyFrom(value)
        elif name == "language_codes":
            recognition.language_codes.extend(value)
        else:
            setattr(recognition, name, value)
    return asr_pb2.StreamingRecognitionConfig(config=recognition, interim_results=interim_results)


def requests(
    streaming_config: asr_pb2.StreamingRecognitionConfig | None, chunks: Iterable[bytes]
) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    if streaming_config is not None:
        yield asr_pb2.StreamingRecognizeRequest(streaming_config=streaming_config)
    for chunk in chunks:
        yield asr_pb2.StreamingRecognizeRequest(audio_content=chunk)


def stream(
    stub: asr_pb2_grpc.RecognizerStub,
    streaming_config: asr_pb2.StreamingRecognitionConfig | None,
    chunks: Iterable[bytes],
    timeout: float = 60,
) -> list[asr_pb2.StreamingRecognizeResponse]:
    return list(stub.StreamingRecognize(requests(streaming_config, chunks), timeout=timeout))


def finals(responses: Iterable[asr_pb2.StreamingRecognizeResponse]) -> list[str]:
    return [r.alternatives[0].transcript for resp in responses for r in resp.results if r.is_final]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` every 20 ms until it holds or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- server ------------------------------------------------------------------------------------
class ServerThread:
    """An ``AsrServer`` on 127.0.0.1 (ephemeral port), its event loop in a daemon thread.

    Tests talk to it over real gRPC from the main thread.
    """

    def __init__(
        self,
        model_dirs: list[Path],
        *,
        max_streams: int = 16,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        drain_timeout_s: float = 5.0,
        default_model: str | None = None,
        beam_size: int | None = None,
        connections: ConnectionPolicy | None = None,
        step_timeout_s: float = 10.0,
        server_options: dict[str, Any] | None = None,
        int8: bool = True,
    ) -> None:
        self.int8 = int8  # the server's --int8 (its default: models with calibrated ranges run int8)
        self.step_timeout_s = step_timeout_s
        self.server_options = server_options or {}  # more AsrServer keywords: tls, tokens, health_port
        self.model_dirs = model_dirs
        self.connections = connections
        self.beam_size = beam_size
        self.max_streams = max_streams
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.drain_timeout_s = drain_timeout_s
        self.default_model = default_model
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="asr-test-server", daemon=True)
        self.server: AsrServer | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def registry(self) -> ModelRegistry:
        assert self.server is not None
        return self.server.registry

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def start(self) -> ServerThread:
        self._thread.start()

        async def start() -> int:
            registry = ModelRegistry.load(
                self.model_dirs,
                device="cpu",
                capacity=self.max_streams + self.max_batch_size,
                max_batch_size=self.max_batch_size,
                max_wait_s=self.max_wait_s,
                default=self.default_model,
                beam_size=self.beam_size,
                step_timeout_s=self.step_timeout_s,
                int8=self.int8,
            )
            self.server = AsrServer(
                registry,
                host="127.0.0.1",
                port=0,
                max_streams=self.max_streams,
                drain_timeout_s=self.drain_timeout_s,
                connections=self.connections,
                **self.server_options,
            )
            return await self.server.start()

        self.port = self.call(start())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop(grace=0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def active_streams(self) -> int:
        """Streams holding a slot, across models (read on the server's loop)."""

        async def count() -> int:
            return sum(engine.num_active for engine in self.registry.engines.values())

        return self.call(count())

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def channel_to(server: ServerThread) -> grpc.Channel:
    return grpc.insecure_channel(server.target)


def own_connection(target: str) -> grpc.Channel:
    """A channel with a TCP connection of its own: by default the channels of one process to one
    target share a connection (gRPC's global subchannel pool), so all their streams would reach
    one worker process of a ``--workers`` server."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


class ServerProcess:
    """``python -m server.main`` (the ``asr-server`` entry point) on an ephemeral port.

    ``workers``: ``--workers`` (1 unless a test is about worker processes: two spawned workers
    take twice as long to start on a small machine). ``args``: more flags. ``wait``: return once
    it logs its gRPC port (``port``); else call ``wait_for`` to follow its start. ``log``
    collects its stderr.
    """

    def __init__(
        self,
        model_dir: Path | None,
        drain_timeout_s: float = 30.0,
        finals_timeout_s: float = 5.0,
        *,
        workers: int = 1,
        args: Iterable[str] = (),
        wait: bool = True,
    ) -> None:
        model = ["--model-dir", str(model_dir)] if model_dir is not None else []
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "server.main", *model,
                "--host", "127.0.0.1",
                "--port", "0",
                "--metrics-port", "-1",
                "--drain-timeout-s", str(drain_timeout_s),
                "--drain-finals-timeout-s", str(finals_timeout_s),
                "--max-wait-ms", "5",
                "--workers", str(workers),
                *args,
            ],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.port = int(self.wait_for(r"gRPC listening on [\d.]+:(\d+)")[1]) if wait else 0

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """The first log line matching ``pattern``, waiting for it (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            reading = self._reader.is_alive()
            for line in list(self.log):
                if match := re.search(pattern, line):
                    return match
            if not reading:
                raise AssertionError(f"server exited without logging {pattern!r}:\n" + "".join(self.log))
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in {timeout} s:\n" + "".join(self.log))
            time.sleep(0.02)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def health(self, channel: grpc.Channel, timeout: float = 5) -> int:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service="asr.v1.Recognizer"), timeout=timeout).status

    def wait_serving(self, channel: grpc.Channel, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.health(channel) == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise AssertionError("server never became SERVING:\n" + "".join(self.log))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# -- metrics -------------------------------------------------------------------------------------
def metric_total(name: str, **labels: str) -> float:
    """Sum of the samples ``name`` in the process's Prometheus registry whose labels include
    ``labels`` (the servers of ``ServerThread`` record there), 0 when there are none."""
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
