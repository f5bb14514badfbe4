"""separate_recognition_per_channel: each input channel is its own stream, results carry audio_channel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import jiwer
import numpy as np
import pytest
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, fixed_chunks, requires_espeak, stream, synthesize

from server.model.checkpoint import DEFAULT_MODEL_DIR

pytestmark = requires_espeak

LEFT, RIGHT = "please call me back tomorrow morning", "the meeting is on thursday afternoon"


@pytest.fixture(scope="module")
def bundled() -> Iterator[asr_pb2_grpc.RecognizerStub]:
    with ServerThread([Path(DEFAULT_MODEL_DIR)]) as running, grpc.insecure_channel(running.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


def _stereo() -> tuple[bytes, int]:
    """LEFT on channel 0 and RIGHT on channel 1, interleaved LINEAR16."""
    (left, rate), (right, _) = synthesize(LEFT), synthesize(RIGHT)
    a, b = np.frombuffer(left, dtype="<i2"), np.frombuffer(right, dtype="<i2")
    frames = np.zeros((max(a.size, b.size) + rate // 2, 2), dtype="<i2")
    frames[: a.size, 0], frames[: b.size, 1] = a, b
    return frames.tobytes(), rate


def _config(rate: int, **fields: object) -> asr_pb2.RecognitionConfig:
    return asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR16, sample_rate_hertz=rate, audio_channel_count=2, **fields)


def _texts(results: list[asr_pb2.StreamingRecognitionResult]) -> dict[int, str]:
    texts: dict[int, list[str]] = {}
    for result in results:
        if result.is_final:
            texts.setdefault(result.audio_channel, []).append(result.alternatives[0].transcript)
    return {channel: " ".join(parts) for channel, parts in texts.items()}


def test_each_channel_is_recognised_on_its_own(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    audio, rate = _stereo()
    config = asr_pb2.StreamingRecognitionConfig(
        config=_config(rate, separate_recognition_per_channel=True), interim_results=True
    )
    responses = stream(bundled, config, fixed_chunks(audio, 6400))
    texts = _texts([result for response in responses for result in response.results])
    assert sorted(texts) == [0, 1]
    assert jiwer.wer(LEFT, texts[0]) <= 0.34 and jiwer.wer(RIGHT, texts[1]) <= 0.34, texts
    recognized = bundled.Recognize(
        asr_pb2.RecognizeRequest(config=_config(rate, separate_recognition_per_channel=True), audio_content=audio)
    )
    assert _texts(list(recognized.results)) == texts


def test_per_channel_with_a_selected_channel_is_invalid(bundled: asr_pb2_grpc.RecognizerStub) -> None:
    audio, rate = _stereo()
    config = asr_pb2.StreamingRecognitionConfig(
        config=_config(rate, separate_recognition_per_channel=True, selected_channel=1)
    )
    with pytest.raises(grpc.RpcError) as error:
        stream(bundled, config, [audio[:6400]])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "leave selected_channel unset" in error.value.details()
