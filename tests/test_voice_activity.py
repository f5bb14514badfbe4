"""Voice activity events, their timeouts and single-utterance streams, end to end on the bundled model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, fixed_chunks, requires_espeak, stream, synthesize
from google.protobuf.duration_pb2 import Duration

from server.model.checkpoint import DEFAULT_MODEL_DIR

pytestmark = requires_espeak

FIRST, SECOND = "please call me back tomorrow morning", "the meeting is on thursday"
TOLERANCE_S = 0.3  # the bound on event times


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread([Path(DEFAULT_MODEL_DIR)]) as running:
        yield running


@pytest.fixture(scope="module")
def bundled(server: ServerThread) -> Iterator[asr_pb2_grpc.RecognizerStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


def _speech_edges(pcm: bytes) -> tuple[int, int]:
    """First and last sample of ``pcm`` above 2% of its peak: where the voice is."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.float32))
    loud = np.nonzero(samples > 0.02 * samples.max())[0]
    return int(loud[0]), int(loud[-1])


def _scene(rate: int, *parts: str | float) -> tuple[bytes, list[tuple[float, float]]]:
    """Sentences (str) and silences (float seconds) in a row, and where each sentence's voice is (s)."""
    audio, spans, position = [], [], 0
    for part in parts:
        if isinstance(part, str):
            pcm, _ = synthesize(part)
            first, last = _speech_edges(pcm)
            spans.append(((position // 2 + first) / rate, (position // 2 + last) / rate))
        else:
            pcm = bytes(2 * round(part * rate))
        audio.append(pcm)
        position += len(pcm)
    return b"".join(audio), spans


def _config(rate: int, **fields: object) -> asr_pb2.StreamingRecognitionConfig:
    config = asr_pb2.StreamingRecognitionConfig(
        config=asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR16, sample_rate_hertz=rate)
    )
    for name, value in fields.items():
        if name == "voice_activity_timeout":
            config.voice_activity_timeout.CopyFrom(value)
        else:
            setattr(config, name, value)
    return config


def _events(responses: list[asr_pb2.StreamingRecognizeResponse]) -> list[tuple[int, float]]:
    return [
        (r.speech_event_type, r.speech_event_time.ToMilliseconds() / 1000)
        for r in responses
        if r.speech_event_type != asr_pb2.SPEECH_EVENT_UNSPECIFIED
    ]


def test_voice_activity_events_mark_each_utterance_within_the_tolerance(
    bundled: asr_pb2_grpc.RecognizerStub,
) -> None:
    rate = synthesize(FIRST)[1]
    audio, spans = _scene(rate, 1.0, FIRST, 1.5, SECOND, 1.0)
    responses = stream(bundled, _config(rate, enable_voice_activity_events=True), fixed_chunks(audio, 3200))
    events = _events(responses)
    begin, end = asr_pb2.SPEECH_ACTIVITY_BEGIN, asr_pb2.SPEECH_ACTIVITY_END
    assert [kind for kind, _ in events] == [begin, end, begin, end]
    for (_, began), (_, ended), (start, stop) in zip(events[::2], events[1::2], spans, strict=True):
        assert abs(began - start) <= TOLERANCE_S, (began, start)
        assert abs(ended - stop) <= TOLERANCE_S, (ended, stop)
    assert not any(not result.is_final for r in responses for result in r.results), "no interim results asked for"
    finals = [result for r in responses for result in r.results if result.is_final]
    assert len(finals) == 2


def test_a_single_utterance_stream_ends_after_its_first_final(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    rate = synthesize(FIRST)[1]
    audio, _ = _scene(rate, 0.5, FIRST, 1.5, SECOND, 1.0)
    call = bundled.StreamingRecognize(
        _requests(_config(rate, single_utterance=True, interim_results=True), audio), timeout=60
    )
    responses = list(call)
    assert call.code() == grpc.StatusCode.OK
    finals = [result for r in responses for result in r.results if result.is_final]
    assert len(finals) == 1 and "tomorrow" in finals[0].alternatives[0].transcript
    assert responses[-1].speech_event_type == asr_pb2.END_OF_SINGLE_UTTERANCE
    assert any(not result.is_final for r in responses for result in r.results), "interim results were asked for"


def _requests(config: asr_pb2.StreamingRecognitionConfig, audio: bytes) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    yield asr_pb2.StreamingRecognizeRequest(streaming_config=config)
    for chunk in fixed_chunks(audio, 3200):
        yield asr_pb2.StreamingRecognizeRequest(audio_content=chunk)


def test_voice_activity_timeouts_end_the_stream(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    rate = synthesize(FIRST)[1]
    silence, _ = _scene(rate, 4.0)
    start_only = asr_pb2.VoiceActivityTimeout(speech_start_timeout=Duration(seconds=1))
    responses = stream(
        bundled, _config(rate, enable_voice_activity_events=True, voice_activity_timeout=start_only), [silence]
    )
    assert [kind for kind, _ in _events(responses)] == [asr_pb2.SPEECH_ACTIVITY_TIMEOUT]
    assert responses[-1].speech_event_type == asr_pb2.SPEECH_ACTIVITY_TIMEOUT

    audio, _ = _scene(rate, 0.5, FIRST, 5.0)
    end_only = asr_pb2.VoiceActivityTimeout(speech_end_timeout=Duration(seconds=1))
    responses = stream(
        bundled,
        _config(rate, enable_voice_activity_events=True, voice_activity_timeout=end_only),
        fixed_chunks(audio, 3200),
    )
    kinds = [kind for kind, _ in _events(responses)]
    assert kinds == [asr_pb2.SPEECH_ACTIVITY_BEGIN, asr_pb2.SPEECH_ACTIVITY_END, asr_pb2.SPEECH_ACTIVITY_TIMEOUT]
    ended, timed_out = _events(responses)[1][1], _events(responses)[2][1]
    assert timed_out < len(audio) / 2 / rate - 1.0, "the stream ended before all its audio"
    assert timed_out - ended >= 1.0


def test_a_bad_voice_activity_timeout_is_invalid_argument(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    rate = synthesize(FIRST)[1]
    negative = asr_pb2.VoiceActivityTimeout(speech_end_timeout=Duration(seconds=-1))
    with pytest.raises(grpc.RpcError) as error:
        stream(bundled, _config(rate, voice_activity_timeout=negative), [bytes(3200)])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "voice_activity_timeout.speech_end_timeout must be between 1 ms and 3600 s" in error.value.details()
