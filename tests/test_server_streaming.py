"""A real server on loopback: concurrent streams, batching invariance, partials, formats, APIs.

These run on a tiny random-init model: they check plumbing, batching and streaming
semantics exactly (a random model is as deterministic as a trained one). Recognition
quality is checked with the trained bundled model by the tests at the end.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import jiwer
import numpy as np
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import (
    ServerThread,
    config,
    finals,
    fixed_chunks,
    random_chunks,
    requires_espeak,
    stream,
    synthesize,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY
from random_model import RANDOM_MODEL_TEXT

from server.api.audio import MULAW_TABLE
from server.metrics import serve_metrics
from server.model.checkpoint import DEFAULT_MODEL_DIR

pytestmark = requires_espeak

TEXTS = [
    *RANDOM_MODEL_TEXT,
    "the meeting was moved to friday afternoon",
    "open the window it is warm in here",
    "my phone number has changed since last year",
    "thank you for calling have a nice day",
]
# Short utterances, so every clip has several and the decoder reset path is exercised.
ENDPOINTING = asr_pb2.EndpointingConfig(max_utterance_ms=1200)


@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> ServerThread:
    with ServerThread([random_model_dir], max_streams=16, max_batch_size=16, max_wait_ms=20) as running:
        yield running


@pytest.fixture(scope="module")
def clips() -> list[tuple[bytes, int]]:
    return [synthesize(text) for text in TEXTS]


def _streaming_config(rate: int, **fields: object) -> asr_pb2.StreamingRecognitionConfig:
    return config(rate, enable_word_time_offsets=True, endpointing=ENDPOINTING, **fields)


def test_ten_concurrent_streams_in_random_chunks_equal_each_stream_alone(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]
) -> None:
    alone = [stream(stub, _streaming_config(rate), fixed_chunks(pcm, 3200)) for pcm, rate in clips]
    scheduler = server.registry.engines[server.registry.default].scheduler
    scheduler.max_batch_seen = 0

    def run(index: int) -> list[asr_pb2.StreamingRecognizeResponse]:
        pcm, rate = clips[index]
        rng = np.random.default_rng(index)
        return stream(stub, _streaming_config(rate), random_chunks(pcm, rng))

    with ThreadPoolExecutor(len(clips)) as pool:
        together = list(pool.map(run, range(len(clips))))

    assert scheduler.max_batch_seen > 1, "the streams were never batched together"
    for (pcm, rate), single, batched in zip(clips, alone, together, strict=True):
        assert finals(single), "every clip yields at least one final result"
        # Same partials, finals, word times and progress, whatever the chunking and batching.
        assert batched == single
        duration_ms = len(pcm) / 2 / rate * 1000
        processed = batched[-1].audio_processed.ToMilliseconds()
        assert duration_ms - 300 <= processed <= duration_ms + 40


def test_partials_arrive_before_finals(stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]) -> None:
    pcm, rate = clips[0]
    responses = stream(stub, _streaming_config(rate), fixed_chunks(pcm, 1000))
    seen: dict[int, list[bool]] = {}
    for response in responses:
        for result in response.results:
            seen.setdefault(result.utterance_index, []).append(result.is_final)
    assert len(seen) >= 2
    for utterance, kinds in seen.items():
        assert kinds[-1] is True, f"utterance {utterance} ends with a final"
        assert kinds.count(True) == 1
        assert kinds[0] is False, f"utterance {utterance} had no partial before its final"
    assert sorted(seen) == list(range(len(seen)))


def test_interim_results_off_sends_only_finals(
    stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]
) -> None:
    pcm, rate = clips[1]
    with_partials = stream(stub, _streaming_config(rate), fixed_chunks(pcm, 4000))
    only_finals = stream(stub, _streaming_config(rate, interim_results=False), fixed_chunks(pcm, 4000))
    assert all(r.is_final for resp in only_finals for r in resp.results)
    assert finals(only_finals) == finals(with_partials)


def test_results_carry_times_words_and_channel(
    stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]
) -> None:
    pcm, rate = clips[2]
    responses = stream(stub, _streaming_config(rate), fixed_chunks(pcm, 3200))
    duration_ms = len(pcm) / 2 / rate * 1000
    previous_end = 0
    for result in (r for resp in responses for r in resp.results if r.is_final):
        start, end = result.start_time.ToMilliseconds(), result.end_time.ToMilliseconds()
        assert previous_end <= start < end <= duration_ms + 200
        previous_end = end
        assert result.channel == 0
        assert result.language_code == "en"  # a monolingual model's results are in its language
        words = result.alternatives[0].words
        assert " ".join(w.word for w in words) == result.alternatives[0].transcript
        for word in words:
            assert start <= word.start_time.ToMilliseconds() < word.end_time.ToMilliseconds() <= end


def test_word_times_only_when_requested(stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]) -> None:
    pcm, rate = clips[3]
    responses = stream(stub, config(rate, endpointing=ENDPOINTING), fixed_chunks(pcm, 3200))
    assert finals(responses)
    assert all(not r.alternatives[0].words for resp in responses for r in resp.results)


def test_telephony_and_multichannel_audio_equal_their_linear16_mono(
    stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]
) -> None:
    pcm, rate = clips[4]
    mono = np.frombuffer(pcm, "<i2")
    # Stereo with the speech in both channels downmixes to exactly the mono signal; with
    # noise in channel 0, selecting channel 1 gives the mono signal too.
    noise = np.random.default_rng(0).integers(-3000, 3000, mono.size).astype("<i2")
    expected = stream(stub, _streaming_config(rate), fixed_chunks(pcm, 3200))
    both = np.stack([mono, mono], axis=1).astype("<i2").tobytes()
    downmixed = stream(stub, _streaming_config(rate, audio_channel_count=2), fixed_chunks(both, 3202))
    assert downmixed == expected
    noisy = np.stack([noise, mono], axis=1).astype("<i2").tobytes()
    selected = stream(
        stub, _streaming_config(rate, audio_channel_count=2, selected_channel=1), fixed_chunks(noisy, 5000)
    )
    assert selected == expected

    # G.711 at 8 kHz: the same audio as mu-law codes and as its LINEAR16 expansion.
    telephone = mono[:: rate // 8000] if rate % 8000 == 0 else mono[: mono.size : 2]
    order = np.argsort(MULAW_TABLE)
    position = np.clip(np.searchsorted(MULAW_TABLE[order], telephone), 0, 255)
    codes = order[position].astype(np.uint8)
    expanded = MULAW_TABLE[codes].astype("<i2").tobytes()
    as_linear = stream(stub, _streaming_config(8000), fixed_chunks(expanded, 1600))
    as_mulaw = stream(stub, _streaming_config(8000, encoding=asr_pb2.MULAW), fixed_chunks(codes.tobytes(), 800))
    assert finals(as_linear)
    assert as_mulaw == as_linear


def test_recognize_returns_the_finals_of_a_stream(
    stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]
) -> None:
    pcm, rate = clips[5]
    streaming_config = _streaming_config(rate)
    streamed = stream(stub, streaming_config, fixed_chunks(pcm, 3200))
    response = stub.Recognize(asr_pb2.RecognizeRequest(config=streaming_config.config, audio_content=pcm), timeout=60)
    assert [r for resp in streamed for r in resp.results if r.is_final] == list(response.results)
    assert response.audio_processed == streamed[-1].audio_processed


def test_list_models(stub: asr_pb2_grpc.RecognizerStub, server: ServerThread) -> None:
    models = stub.ListModels(asr_pb2.ListModelsRequest(), timeout=10).models
    assert len(models) == 1
    info = models[0]
    model = server.registry.engines[info.name].model
    assert info.is_default
    assert list(info.languages) == ["en"]
    assert info.sample_rate_hertz == 16000
    assert not info.multi_talker
    assert info.chunk_ms == model.config.encoder.chunk_size * 40
    assert info.latency_ms == model.latency_ms >= info.chunk_ms
    assert info.num_parameters == model.num_parameters > 0


def test_health_and_reflection(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "asr.v1.Recognizer"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {"asr.v1.Recognizer", "grpc.health.v1.Health"} <= services


def test_metrics_are_recorded_and_served(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub, clips: list[tuple[bytes, int]]
) -> None:
    name = server.registry.default
    labels = {"model": name}
    streams_before = REGISTRY.get_sample_value("asr_streams_total", labels) or 0
    audio_before = REGISTRY.get_sample_value("asr_audio_seconds_total", labels) or 0
    pcm, rate = clips[6]
    stream(stub, _streaming_config(rate), fixed_chunks(pcm, 3200))
    assert REGISTRY.get_sample_value("asr_streams_total", labels) == streams_before + 1
    audio = REGISTRY.get_sample_value("asr_audio_seconds_total", labels) - audio_before
    assert abs(audio - len(pcm) / 2 / rate) < 0.3
    assert REGISTRY.get_sample_value("asr_batch_size_count", labels) > 0
    assert REGISTRY.get_sample_value("asr_step_seconds_count", labels) > 0
    assert REGISTRY.get_sample_value("asr_queue_wait_seconds_count", labels) > 0
    assert REGISTRY.get_sample_value("asr_partial_latency_seconds_count", labels) > 0
    assert REGISTRY.get_sample_value("asr_active_streams", labels) == 0

    port = serve_metrics("127.0.0.1", 0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for metric in (
        "asr_active_streams",
        "asr_batch_size_bucket",
        "asr_queue_wait_seconds_bucket",
        "asr_step_seconds_bucket",
        "asr_audio_seconds_total",
        "asr_partial_latency_seconds_bucket",
        "asr_streams_total",
    ):
        assert f"\n{metric}{{" in text, metric


# -- real recognition (needs the trained bundled model) -----------------------------------------
# Corpus WER over all streams, clean espeak-ng speech (default voice). Measured on the
# step-21800 model: 1.3% with the default search (beam 32 + LM + word-LM and CTC rescoring), 7.7% greedy.
MAX_WER = {"default search": 0.08, "greedy": 0.14}


@pytest.mark.parametrize("beam_size", [None, 1], ids=["default search", "greedy"])
def test_trained_model_transcribes_ten_concurrent_streams(beam_size: int | None) -> None:
    """The bundled model's own search (beam + LM, partials may be revised) and greedy search."""
    mode = "greedy" if beam_size == 1 else "default search"
    with (
        ServerThread([DEFAULT_MODEL_DIR], max_wait_ms=20, beam_size=beam_size) as running,
        grpc.insecure_channel(running.target) as ch,
    ):
        trained = asr_pb2_grpc.RecognizerStub(ch)
        clips = [synthesize(text) for text in TEXTS]
        alone = [finals(stream(trained, config(rate), fixed_chunks(pcm, 3200))) for pcm, rate in clips]

        def run(index: int) -> list[str]:
            pcm, rate = clips[index]
            return finals(stream(trained, config(rate), random_chunks(pcm, np.random.default_rng(index))))

        with ThreadPoolExecutor(len(clips)) as pool:
            together = list(pool.map(run, range(len(clips))))
    assert together == alone
    hypotheses = [" ".join(hypothesis) for hypothesis in together]
    print(f"bundled model, {mode}: WER over {len(TEXTS)} concurrent streams {jiwer.wer(TEXTS, hypotheses):.2%}")
    assert jiwer.wer(TEXTS, hypotheses) <= MAX_WER[mode], list(zip(TEXTS, hypotheses, strict=True))
