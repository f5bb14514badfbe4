"""Bad input, limits, cancellation and deadlines: each gets its status, and the server carries on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import (
    ServerThread,
    config,
    finals,
    fixed_chunks,
    metric_total,
    requests,
    requires_espeak,
    stream,
    synthesize,
    wait_until,
)
from random_model import save_random_model

pytestmark = requires_espeak

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def multi_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multilingual (en, de) multi-talker random model next to the default monolingual one."""
    return save_random_model(
        tmp_path_factory.mktemp("models") / "random-multi", multi_talker=True, languages=["en", "de"]
    )


@pytest.fixture(scope="module")
def server(random_model_dir: Path, multi_model_dir: Path) -> ServerThread:
    with ServerThread(
        [random_model_dir, multi_model_dir],
        max_streams=3,
        max_batch_size=4,
        default_model=random_model_dir.name,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    return synthesize("please call me back tomorrow morning")


def _assert_server_healthy(server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]) -> None:
    """Every slot is free again and a normal stream succeeds."""
    assert wait_until(lambda: server.active_streams() == 0 and server.server.admission.active == 0)
    pcm, rate = speech
    assert finals(stream(stub, config(rate), fixed_chunks(pcm, 3200)))


def _bad_stream(rate: int, pcm: bytes, **fields: object) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    return requests(config(rate, **fields), fixed_chunks(pcm[:32000], 3200))


def _second_config(rate: int, pcm: bytes) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate))
    yield asr_pb2.StreamingRecognizeRequest(audio_content=pcm[:3200])
    yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(rate))


# (id, request factory(rate, pcm), expected message fragments)
CASES = [
    ("audio-first", lambda rate, pcm: requests(None, [pcm[:3200]]), ["first request", "streaming_config"]),
    ("empty-stream", lambda rate, pcm: iter(()), ["first request", "streaming_config"]),
    (
        "bad-encoding",
        lambda rate, pcm: _bad_stream(rate, pcm, encoding=7),
        ["encoding 7", "LINEAR16, MULAW, ALAW"],
    ),
    (
        "rate-too-low",
        lambda rate, pcm: _bad_stream(7999, pcm),
        ["sample_rate_hertz", "8000 and 48000", "7999"],
    ),
    (
        "rate-too-high",
        lambda rate, pcm: _bad_stream(96000, pcm),
        ["sample_rate_hertz", "8000 and 48000", "96000"],
    ),
    ("rate-missing", lambda rate, pcm: _bad_stream(0, pcm), ["sample_rate_hertz", "got 0"]),
    (
        "channel-count",
        lambda rate, pcm: _bad_stream(rate, pcm, audio_channel_count=9),
        ["audio_channel_count"],
    ),
    (
        "selected-channel",
        lambda rate, pcm: _bad_stream(rate, pcm, audio_channel_count=2, selected_channel=2),
        ["selected_channel 2", "0 to 1"],
    ),
    (
        "odd-length",
        lambda rate, pcm: requests(config(rate), [pcm[:3200], pcm[3200:3203]]),
        ["odd", "3 bytes", "16-bit"],
    ),
    (
        "unknown-model",
        lambda rate, pcm: _bad_stream(rate, pcm, model="nope"),
        ["'nope'", "random-en", "random-multi"],
    ),
    (
        "unsupported-language",
        lambda rate, pcm: _bad_stream(rate, pcm, language_codes=["fr"]),
        ["'fr'", "supports: en"],
    ),
    (
        "language-of-other-model",
        lambda rate, pcm: _bad_stream(rate, pcm, model="random-multi", language_codes=["en", "fr-FR"]),
        ["'fr-FR'", "supports: en, de"],
    ),
    (
        "multi-talker-unsupported",
        lambda rate, pcm: _bad_stream(rate, pcm, multi_talker=True),
        ["does not support multi_talker", "random-multi"],
    ),
    (
        "second-config",
        lambda rate, pcm: _second_config(rate, pcm),
        ["streaming_config", "only", "first request"],
    ),
]


@pytest.mark.parametrize(("factory", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_stream_is_rejected_and_server_carries_on(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int], factory, fragments
) -> None:
    pcm, rate = speech
    before = metric_total("asr_errors_total", code="INVALID_ARGUMENT")
    with pytest.raises(grpc.RpcError) as error:
        list(stub.StreamingRecognize(factory(rate, pcm), timeout=30))
    assert error.value.code() == INVALID, error.value.details()
    for fragment in fragments:
        assert fragment in error.value.details()
    assert metric_total("asr_errors_total", code="INVALID_ARGUMENT") == before + 1
    _assert_server_healthy(server, stub, speech)


def test_languages_and_multi_talker_on_a_model_that_has_them(
    stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    german = stream(stub, config(rate, model="random-multi", language_codes=["de-DE"]), fixed_chunks(pcm, 3200))
    results = [r for resp in german for r in resp.results]
    assert results and all(r.language_code == "de" for r in results)
    both = stream(stub, config(rate, model="random-multi", language_codes=["en", "de"]), fixed_chunks(pcm, 3200))
    # With several selected, a result names the one its tokens belong to (tests/test_cmm.py checks which).
    codes = {r.language_code for resp in both for r in resp.results}
    assert codes and codes <= {"en", "de"}
    talkers = stream(stub, config(rate, model="random-multi", multi_talker=True), fixed_chunks(pcm, 3200))
    assert finals(talkers)
    assert {r.channel for resp in talkers for r in resp.results} <= {0, 1}


def test_recognize_rejects_too_long_and_odd_audio(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    recognition = config(8000).config
    with pytest.raises(grpc.RpcError) as error:
        stub.Recognize(asr_pb2.RecognizeRequest(config=recognition, audio_content=bytes(2 * 8000 * 61)), timeout=30)
    assert error.value.code() == INVALID
    assert "at most 60 s" in error.value.details() and "StreamingRecognize" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stub.Recognize(asr_pb2.RecognizeRequest(config=recognition, audio_content=bytes(3)), timeout=30)
    assert error.value.code() == INVALID and "odd" in error.value.details()
    _assert_server_healthy(server, stub, speech)


class HeldStream:
    """A stream that sends its config and some audio, then holds until released."""

    def __init__(self, stub: asr_pb2_grpc.RecognizerStub, rate: int, pcm: bytes, timeout: float | None = None):
        self.release = threading.Event()
        self.sent = threading.Event()
        self._rate, self._pcm = rate, pcm
        self.call = stub.StreamingRecognize(self._requests(), timeout=timeout)

    def _requests(self) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        yield asr_pb2.StreamingRecognizeRequest(streaming_config=config(self._rate))
        yield asr_pb2.StreamingRecognizeRequest(audio_content=self._pcm[:16000])
        self.sent.set()
        self.release.wait(30)

    def finish(self) -> list[asr_pb2.StreamingRecognizeResponse]:
        self.release.set()
        return list(self.call)


def test_streams_past_the_limit_get_resource_exhausted(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    held = [HeldStream(stub, rate, pcm) for _ in range(server.max_streams)]
    try:
        assert wait_until(lambda: server.server.admission.active == server.max_streams)
        with pytest.raises(grpc.RpcError) as error:
            stream(stub, config(rate), fixed_chunks(pcm, 3200))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"limit of {server.max_streams} concurrent streams" in error.value.details()
        # One stream ends: there is room again.
        held.pop().finish()
        assert wait_until(lambda: server.server.admission.active == server.max_streams - 1)
        assert finals(stream(stub, config(rate), fixed_chunks(pcm, 3200)))
    finally:
        for stream_ in held:
            stream_.release.set()
            stream_.call.cancel()
    _assert_server_healthy(server, stub, speech)


def test_cancelled_stream_frees_its_slot_at_once(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    held = HeldStream(stub, rate, pcm)
    assert held.sent.wait(10)
    assert wait_until(lambda: server.active_streams() == 1)
    held.call.cancel()
    held.release.set()
    assert wait_until(lambda: server.active_streams() == 0, timeout=2.0)
    _assert_server_healthy(server, stub, speech)


def test_disconnected_client_frees_its_slot(
    server: ServerThread, speech: tuple[bytes, int], stub: asr_pb2_grpc.RecognizerStub
) -> None:
    pcm, rate = speech
    channel = grpc.insecure_channel(server.target)
    held = HeldStream(asr_pb2_grpc.RecognizerStub(channel), rate, pcm)
    assert held.sent.wait(10)
    assert wait_until(lambda: server.active_streams() == 1)
    channel.close()  # the connection goes away without a clean end of stream
    held.release.set()
    assert wait_until(lambda: server.active_streams() == 0, timeout=2.0)
    _assert_server_healthy(server, stub, speech)


def test_deadline_is_honoured(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    before = metric_total("asr_errors_total", code="DEADLINE_EXCEEDED")
    held = HeldStream(stub, rate, pcm, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        list(held.call)
    held.release.set()
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3
    assert wait_until(lambda: server.active_streams() == 0, timeout=2.0)
    assert wait_until(lambda: metric_total("asr_errors_total", code="DEADLINE_EXCEEDED") == before + 1)
    _assert_server_healthy(server, stub, speech)
