"""What a client sends cannot stall, bloat or confuse the server: bounded error messages, malformed
messages, large messages, silent clients; and faults inside the engine (a step that raises, a step
that hangs) end only the streams they hit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, config, finals, fixed_chunks, requests, requires_espeak, stream, synthesize
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.api.audio import MULAW_TABLE
from server.api.errors import MAX_MESSAGE_BYTES
from server.api.server import ConnectionPolicy
from server.engine.batch import BatchOutput

pytestmark = requires_espeak

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> Iterator[ServerThread]:
    with ServerThread([random_model_dir], max_streams=8, max_batch_size=4) as running:
        yield running


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    return synthesize("please call me back tomorrow morning")


def _error_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        list(call)  # type: ignore[call-overload]
    return raised.value


def _assert_serving(server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    assert finals(stream(stub, config(rate), fixed_chunks(pcm, 3200)))
    deadline = time.monotonic() + 5
    while server.active_streams() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_streams() == 0


# -- bounded messages ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"model": "m" * 20_000}, ["unknown model", "20000 characters"]),
        ({"language_codes": ["x" * 20_000]}, ["does not support language", "20000 characters"]),
        ({"language_codes": [f"q{i}" for i in range(10_000)]}, ["and 9995 more", "it supports: en"]),
    ],
    ids=["long-model-name", "long-language-code", "many-language-codes"],
)
def test_echoed_values_are_bounded(
    server: ServerThread,
    stub: asr_pb2_grpc.RecognizerStub,
    speech: tuple[bytes, int],
    fields: dict[str, object],
    expected: list[str],
) -> None:
    pcm, rate = speech
    error = _error_of(stub.StreamingRecognize(requests(config(rate, **fields), [pcm[:3200]]), timeout=30))
    assert error.code() == INVALID, error.details()
    assert len(error.details().encode()) <= MAX_MESSAGE_BYTES
    for fragment in expected:
        assert fragment in error.details()
    _assert_serving(server, stub, speech)


# -- malformed and empty messages --------------------------------------------------------------------
def test_malformed_messages_are_invalid_argument(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    good = asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate)).SerializeToString()
    audio = asr_pb2.StreamingRecognizeRequest(audio_content=pcm[:3200]).SerializeToString()
    garbage = b"\x0a\xff\xff\xff\x0f"  # field 1, length-delimited, with a length past the end
    with grpc.insecure_channel(server.target) as channel:
        raw_stream = channel.stream_stream("/asr.v1.Recognizer/StreamingRecognize")
        raw_unary = channel.unary_unary("/asr.v1.Recognizer/Recognize")
        for messages in ([garbage], [good, audio, garbage]):
            error = _error_of(raw_stream(iter(messages), timeout=30))
            assert error.code() == INVALID, error.details()
            assert "asr.v1.StreamingRecognizeRequest" in error.details()
            assert "malformed" in error.details()
        with pytest.raises(grpc.RpcError) as unary:
            raw_unary(garbage, timeout=30)
        assert unary.value.code() == INVALID, unary.value.details()
        assert "asr.v1.RecognizeRequest" in unary.value.details()
    _assert_serving(server, stub, speech)


def test_empty_first_request_is_named_as_such(stub: asr_pb2_grpc.RecognizerStub) -> None:
    error = _error_of(stub.StreamingRecognize(iter([asr_pb2.StreamingRecognizeRequest()]), timeout=30))
    assert error.code() == INVALID
    assert "(got an empty request)" in error.details()


# -- one large message -------------------------------------------------------------------------------
def _mulaw(pcm: bytes) -> bytes:
    """LINEAR16 bytes -> G.711 mu-law bytes (nearest code by table search)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    order = np.argsort(MULAW_TABLE)
    sorted_table = MULAW_TABLE[order].astype(np.int32)
    index = np.clip(np.searchsorted(sorted_table, samples), 1, 255)
    nearer = np.where(samples - sorted_table[index - 1] < sorted_table[index] - samples, index - 1, index)
    return order[nearer].astype(np.uint8).tobytes()


def test_a_large_message_loses_nothing_and_others_are_served_meanwhile(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    """4 MiB of 8-kHz MULAW (about 9 minutes) in one message: every second of it goes through the
    model (in pieces, with backpressure), while health checks and another stream are answered."""
    pcm, rate = speech
    samples = np.frombuffer(pcm, dtype="<i2")
    at_8k = samples[:: max(1, rate // 8000)].astype("<i2").tobytes()  # decimated: fine for this test
    message = (_mulaw(at_8k) * (4 * 1024 * 1024 // (len(at_8k) // 2) + 1))[: 4 * 1024 * 1024]
    big_config = asr_pb2.StreamingRecognitionConfig(
        config=asr_pb2.RecognitionConfig(encoding=asr_pb2.MULAW, sample_rate_hertz=8000), interim_results=False
    )
    outcome: dict[str, object] = {}

    def big() -> None:
        outcome["responses"] = list(
            stub.StreamingRecognize(
                iter(
                    [
                        asr_pb2.StreamingRecognizeRequest(streaming_config=big_config),
                        asr_pb2.StreamingRecognizeRequest(audio_content=message),
                    ]
                ),
                timeout=300,
            )
        )
        outcome["done_at"] = time.monotonic()

    sender = threading.Thread(target=big)
    sender.start()
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        other = stream(stub, config(rate), fixed_chunks(pcm, 3200), timeout=120)
    assert finals(other)
    sender.join(300)
    responses = outcome["responses"]
    assert isinstance(responses, list) and responses
    seconds = len(message) / 8000
    # Nothing lost: the model went through the whole message (to within its last partial chunk).
    assert responses[-1].audio_processed.ToMilliseconds() / 1000 == pytest.approx(seconds, abs=0.5)


# -- silent clients ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def impatient_server(random_model_dir: Path) -> Iterator[ServerThread]:
    with ServerThread([random_model_dir], connections=ConnectionPolicy(idle_timeout_s=0.5)) as running:
        yield running


def test_a_silent_client_is_timed_out_and_frees_its_slot(
    impatient_server: ServerThread, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    hold = threading.Event()

    def silent_after_one_chunk(send_config: bool) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        if send_config:
            yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate))
            yield asr_pb2.StreamingRecognizeRequest(audio_content=pcm[:3200])
        hold.wait(20)

    try:
        with grpc.insecure_channel(impatient_server.target) as channel:
            stub = asr_pb2_grpc.RecognizerStub(channel)
            for send_config in (True, False):
                started = time.monotonic()
                error = _error_of(stub.StreamingRecognize(silent_after_one_chunk(send_config), timeout=20))
                assert error.code() == grpc.StatusCode.OUT_OF_RANGE, error.details()
                assert "no message from the client for 0.5 s" in error.details()
                assert time.monotonic() - started < 5
            _assert_serving(impatient_server, stub, speech)
    finally:
        hold.set()


# -- faults inside the engine ------------------------------------------------------------------------
@pytest.fixture
def faulty_server(random_model_dir: Path) -> Iterator[ServerThread]:
    with ServerThread([random_model_dir], step_timeout_s=0.5) as running:
        yield running


def _inject(server: ServerThread, fault: object) -> None:
    """Replace the next model step of the server's only engine by ``fault(batch)`` (then restore)."""
    (engine,) = server.registry.engines.values()
    stepper = engine.worker._stepper  # noqa: SLF001 (fault injection reaches inside on purpose)
    real_step = stepper.step

    def step_once(batch: list) -> BatchOutput:  # type: ignore[type-arg]
        stepper.step = real_step  # type: ignore[method-assign]
        return fault(batch)  # type: ignore[operator]

    stepper.step = step_once  # type: ignore[method-assign]


def test_a_step_that_raises_ends_its_streams_with_internal(
    faulty_server: ServerThread, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech

    def raises(batch: list) -> BatchOutput:  # type: ignore[type-arg]
        raise RuntimeError("injected fault")

    _inject(faulty_server, raises)
    with grpc.insecure_channel(faulty_server.target) as channel:
        stub = asr_pb2_grpc.RecognizerStub(channel)
        error = _error_of(stub.StreamingRecognize(requests(config(rate), fixed_chunks(pcm, 3200)), timeout=30))
        assert error.code() == grpc.StatusCode.INTERNAL
        assert "model step of this stream failed (RuntimeError)" in error.details()
        _assert_serving(faulty_server, stub, speech)


def test_a_hung_step_is_caught_by_the_watchdog(faulty_server: ServerThread, speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    release = threading.Event()
    (engine,) = faulty_server.registry.engines.values()
    real_step = engine.worker._stepper.step  # noqa: SLF001

    def hangs(batch: list) -> BatchOutput:  # type: ignore[type-arg]
        release.wait(30)
        return real_step(batch)

    _inject(faulty_server, hangs)
    with grpc.insecure_channel(faulty_server.target) as channel:
        stub = asr_pb2_grpc.RecognizerStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        error = _error_of(stub.StreamingRecognize(requests(config(rate), fixed_chunks(pcm, 3200)), timeout=30))
        assert error.code() == grpc.StatusCode.INTERNAL
        assert "did not return within 0.5 s" in error.details()
        request = health_pb2.HealthCheckRequest(service="asr.v1.Recognizer")
        assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
        release.set()
        deadline = time.monotonic() + 10
        while health.Check(request, timeout=5).status != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "health never came back to SERVING"
            time.sleep(0.05)
        _assert_serving(faulty_server, stub, speech)
