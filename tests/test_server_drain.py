"""SIGTERM draining of a real ``asr-server`` process."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerProcess, config, finals, fixed_chunks, requires_espeak, stream, synthesize
from grpc_health.v1 import health_pb2

pytestmark = requires_espeak


def _paced(
    pcm: bytes,
    chunk: int,
    seconds_per_chunk: float,
    started: threading.Event,
    all_started: threading.Barrier | None = None,
) -> Iterator[bytes]:
    for index, piece in enumerate(fixed_chunks(pcm, chunk)):
        yield piece
        started.set()
        if index == 0 and all_started is not None:
            all_started.wait(30)
        time.sleep(seconds_per_chunk)


@pytest.fixture
def speech() -> tuple[bytes, int]:
    return synthesize("we will meet at the station at nine")


def test_sigterm_drains_in_flight_streams_and_refuses_new_ones(
    random_model_dir: Path, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    server = ServerProcess(random_model_dir, drain_timeout_s=30)
    try:
        with grpc.insecure_channel(server.target) as channel:
            server.wait_serving(channel)
            stub = asr_pb2_grpc.RecognizerStub(channel)
            started = threading.Event()
            outcome: dict[str, object] = {}

            def in_flight() -> None:
                # About 2.5 s of audio sent in real time: still running when SIGTERM comes.
                chunk = rate // 10 * 2
                try:
                    outcome["responses"] = stream(stub, config(rate), _paced(pcm, chunk, 0.1, started))
                except grpc.RpcError as error:
                    outcome["error"] = error

            worker = threading.Thread(target=in_flight)
            worker.start()
            assert started.wait(10)
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while server.health(channel) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() < deadline, "health never went NOT_SERVING"
                time.sleep(0.05)
            with pytest.raises(grpc.RpcError) as refused:
                stream(stub, config(rate), fixed_chunks(pcm, 3200))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in refused.value.details()
            assert server.process.poll() is None, "the server must wait for the in-flight stream"
            worker.join(30)
            assert "error" not in outcome, outcome.get("error")
            responses = outcome["responses"]
            assert finals(responses)
            assert responses[-1].audio_processed.ToMilliseconds() > 2000
        assert server.process.wait(30) == 0, "".join(server.log)
        assert any("draining" in line for line in server.log)
    finally:
        server.kill()


def test_drain_timeout_finalises_streams_that_do_not_end(random_model_dir: Path, speech: tuple[bytes, int]) -> None:
    """Finals on drain: a stream still open at the drain timeout gets its utterance's final and ends OK."""
    pcm, rate = speech
    server = ServerProcess(random_model_dir, drain_timeout_s=1)
    release = threading.Event()

    def never_ending() -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate))
        yield asr_pb2.StreamingRecognizeRequest(audio_content=pcm[:32000])
        release.wait(30)

    try:
        with grpc.insecure_channel(server.target) as channel:
            server.wait_serving(channel)
            call = asr_pb2_grpc.RecognizerStub(channel).StreamingRecognize(never_ending(), timeout=60)
            first = next(call)  # the stream is running
            started = time.monotonic()
            os.kill(server.process.pid, signal.SIGTERM)
            responses = [first, *call]  # ends without an error
            assert call.code() == grpc.StatusCode.OK
            assert [r for resp in responses for r in resp.results if r.is_final], "no final on drain"
            assert responses[-1].audio_processed.ToMilliseconds() == 680  # all of it, as when a client half-closes
            assert server.process.wait(15) == 0
            assert time.monotonic() - started < 10
            assert any("drain timeout: finalising 1 open stream" in line for line in server.log)
    finally:
        release.set()
        server.kill()


def test_sigterm_with_50_streams_in_flight_delivers_every_final(
    random_model_dir: Path, speech: tuple[bytes, int]
) -> None:
    """50 live streams at SIGTERM, drain timeout 1 s: those that end in time and those finalised on
    drain all end OK with a final covering the audio the server received."""
    pcm, rate = speech
    # Finals may take a while on a loaded machine (CI beside other jobs): 50 flushes at once.
    server = ServerProcess(random_model_dir, drain_timeout_s=1, finals_timeout_s=30)
    chunk = rate // 10 * 2  # 100 ms
    outcomes: list[dict[str, object]] = [{} for _ in range(50)]
    started = threading.Barrier(51)

    def live(index: int, channel: grpc.Channel) -> None:
        stub = asr_pb2_grpc.RecognizerStub(channel)
        # Streams of 1.2 s to 4 s of audio at real-time pace: some end before the drain timeout.
        length = chunk * (12 + index % 29)
        audio = (pcm * 3)[:length]
        sent = threading.Event()
        try:
            outcomes[index]["responses"] = stream(
                stub, config(rate), _paced(audio, chunk, 0.1, sent, started), timeout=60
            )
        except grpc.RpcError as error:
            outcomes[index]["error"] = f"{error.code()}: {error.details()}"

    try:
        with grpc.insecure_channel(server.target) as channel:
            server.wait_serving(channel)
            threads = [threading.Thread(target=live, args=(i, channel)) for i in range(50)]
            for thread in threads:
                thread.start()
            started.wait(30)
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(60)
        errors = [o["error"] for o in outcomes if "error" in o]
        assert not errors, (errors[:3], "".join(server.log)[-3000:])
        for outcome in outcomes:
            responses = outcome["responses"]
            assert [r for resp in responses for r in resp.results if r.is_final], "a stream lost its final"
            assert responses[-1].audio_processed.ToMilliseconds() >= 500
        assert server.process.wait(30) == 0, "".join(server.log)
    finally:
        server.kill()
