"""The server's Prometheus metrics end to end: a real server, its registry and its /metrics page.

Build info, no ``_created`` series, no real-time-factor gauge (a recording rule computes it:
tests/test_deploy_monitoring.py), final latency from the end of speech, errors labelled by model
and method with bounded values, and client cancellations counted apart from errors.
"""

from __future__ import annotations

import importlib.metadata
import platform
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import (
    ServerThread,
    config,
    fixed_chunks,
    metric_total,
    requests,
    requires_espeak,
    stream,
    synthesize,
    wait_until,
)

from server import metrics
from server.engine.arrivals import AudioArrivals
from server.metrics import serve_metrics

pytestmark = requires_espeak

# Endpointing that never fires within a test's speech: the one final comes at the half-close.
NO_ENDPOINT = asr_pb2.EndpointingConfig(trailing_silence_ms=60_000, max_utterance_ms=60_000)
HOLD_S = 1.5  # between the last audio and the half-close
METHOD = "StreamingRecognize"


@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> Iterator[ServerThread]:
    with ServerThread([random_model_dir]) as running:
        yield running


@pytest.fixture(scope="module")
def metrics_url() -> str:
    return f"http://127.0.0.1:{serve_metrics('127.0.0.1', 0)}/metrics"


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    return synthesize("please call me back tomorrow morning")


def _scrape(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def _rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def test_page_has_build_info_and_neither_created_series_nor_the_rtf_gauge(server: ServerThread, metrics_url: str):
    text = _scrape(metrics_url)
    assert "_created" not in text
    assert "asr_real_time_factor" not in text
    build = {
        "version": importlib.metadata.version("streaming-asr"),
        "python": platform.python_version(),
        "torch": importlib.metadata.version("torch"),
    }
    assert metric_total("asr_build_info", **build) == 1
    line = next(line for line in text.splitlines() if line.startswith("asr_build_info{"))
    assert line.endswith(" 1.0") and all(f'{key}="{value}"' in line for key, value in build.items())


def test_final_latency_runs_from_the_end_of_speech_to_the_final(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int], metrics_url: str
):
    """All audio is sent at once, then held for ``HOLD_S`` before the half-close: the final (the
    only one, endpointing is off) is at least that late after the audio at its end arrived."""
    pcm, rate = speech
    model = server.registry.default
    count_before = metric_total("asr_final_latency_seconds_count", model=model)
    sum_before = metric_total("asr_final_latency_seconds_sum", model=model)
    fast_before = metric_total("asr_final_latency_seconds_bucket", model=model, le="1.0")

    def held(chunks: Iterator[asr_pb2.StreamingRecognizeRequest]) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        yield from chunks
        time.sleep(HOLD_S)

    started = time.monotonic()
    responses = list(
        stub.StreamingRecognize(
            held(requests(config(rate, endpointing=NO_ENDPOINT), fixed_chunks(pcm, 3200))), timeout=60
        )
    )
    elapsed = time.monotonic() - started
    finals = [result for response in responses for result in response.results if result.is_final]
    assert len(finals) == 1, "the random model emits tokens: one final at the half-close"
    assert metric_total("asr_final_latency_seconds_count", model=model) == count_before + 1
    slow = 1 - (metric_total("asr_final_latency_seconds_bucket", model=model, le="1.0") - fast_before)
    assert slow == 1, f"the final came {HOLD_S} s after the audio, not within 1 s"
    latency = metric_total("asr_final_latency_seconds_sum", model=model) - sum_before
    # The server receives the last audio a little after the client yields it.
    assert HOLD_S - 0.2 <= latency < elapsed
    assert f'asr_final_latency_seconds_count{{model="{model}"}}' in _scrape(metrics_url)


def test_errors_carry_model_and_method_and_no_client_string(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int], metrics_url: str
):
    pcm, rate = speech
    model = server.registry.default
    cases = [
        # (the call, its labels): an unknown model name maps to a fixed value ...
        (
            lambda: stream(stub, config(rate, model="no-such-model-4f7a"), fixed_chunks(pcm, 3200)),
            {"model": metrics.UNKNOWN_MODEL, "method": METHOD},
        ),
        # ... a served model (named or the default) is itself, also when the rest of the config is bad ...
        (lambda: stream(stub, config(1234), fixed_chunks(pcm, 3200)), {"model": model, "method": METHOD}),
        (
            lambda: stub.Recognize(
                asr_pb2.RecognizeRequest(config=asr_pb2.RecognitionConfig(model=model, sample_rate_hertz=5)), timeout=30
            ),
            {"model": model, "method": "Recognize"},
        ),
        # ... and before any configuration the model is not known.
        (lambda: stream(stub, None, fixed_chunks(pcm, 3200)), {"model": metrics.NO_MODEL, "method": METHOD}),
    ]
    for call, labels in cases:
        before = metric_total("asr_errors_total", code="INVALID_ARGUMENT", **labels)
        assert _rpc_error(call).code() == grpc.StatusCode.INVALID_ARGUMENT
        assert metric_total("asr_errors_total", code="INVALID_ARGUMENT", **labels) == before + 1, labels
    text = _scrape(metrics_url)
    assert "no-such-model-4f7a" not in text
    assert f'asr_errors_total{{code="INVALID_ARGUMENT",method="Recognize",model="{model}"}}' in text


def test_malformed_unary_request_counts_with_its_method_and_no_model(server: ServerThread):
    before = metric_total("asr_errors_total", code="INVALID_ARGUMENT", model=metrics.NO_MODEL, method="Recognize")
    with grpc.insecure_channel(server.target) as channel:
        raw = channel.unary_unary("/asr.v1.Recognizer/Recognize")  # bytes in, bytes out
        error = _rpc_error(lambda: raw(b"\xff\xff\xff", timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = metric_total("asr_errors_total", code="INVALID_ARGUMENT", model=metrics.NO_MODEL, method="Recognize")
    assert after == before + 1


def test_client_cancellation_is_counted_apart_from_errors(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int], metrics_url: str
):
    pcm, rate = speech
    model = server.registry.default
    errors_before = metric_total("asr_errors_total")
    cancelled_before = metric_total("asr_cancellations_total", model=model, method=METHOD)
    release = threading.Event()

    def audio_then_wait() -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        yield from requests(config(rate), fixed_chunks(pcm, 3200))
        release.wait(30)  # the stream stays open until the client cancels it

    call = stub.StreamingRecognize(audio_then_wait(), timeout=60)
    try:
        next(call)  # the server is recognising this stream
        call.cancel()
    finally:
        release.set()
    assert wait_until(lambda: metric_total("asr_cancellations_total", model=model, method=METHOD) > cancelled_before)
    assert metric_total("asr_cancellations_total", model=model, method=METHOD) == cancelled_before + 1
    assert wait_until(lambda: server.active_streams() == 0)
    assert metric_total("asr_errors_total") == errors_before
    assert metric_total("asr_errors_total", code="CANCELLED") == 0
    assert f'asr_cancellations_total{{method="{METHOD}",model="{model}"}}' in _scrape(metrics_url)


def test_audio_arrivals_date_a_position_and_forget_what_no_result_can_end_in():
    arrivals = AudioArrivals(sample_rate=1000)  # 1 sample = 1 ms
    assert arrivals.arrival_of(0) is None
    for index in range(5):
        arrivals.record(100, arrived_at=10.0 + index)  # pieces ending at 100, 200, ... 500 ms
    assert arrivals.received_ms == 500
    assert arrivals.arrival_of(0) == 10.0
    assert arrivals.arrival_of(250) == 12.0  # in the third piece
    assert arrivals.arrival_of(300) == 12.0  # the third piece's end
    assert arrivals.arrival_of(900) == 14.0  # past the end (zero padding): the last piece
    arrivals.forget_before(350)
    assert arrivals.arrival_of(0) == 13.0  # the piece holding 350 ms is kept
