"""FLAC and Ogg Opus streamed as container bytes: decoded incrementally, exactly (FLAC) or as the
whole file decodes (Opus); the header gives the rate; damaged or cut streams get INVALID_ARGUMENT."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import jiwer
import numpy as np
import pytest
import soundfile as sf
import soxr
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, finals, fixed_chunks, random_chunks, requires_espeak, stream, synthesize

from server.api.audio import AudioFormatError
from server.api.containers import ContainerDecoder, ogg_pages_end
from server.model.checkpoint import DEFAULT_MODEL_DIR

pytestmark = requires_espeak

SENTENCE = "please call me back tomorrow morning"


def _encoded(pcm: bytes, rate: int, fmt: str, subtype: str, channels: int = 1) -> bytes:
    """espeak's ``pcm`` at ``rate`` as a FLAC or Ogg Opus file (Opus: resampled to 16 kHz first)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if fmt == "OGG":
        samples = soxr.resample(samples.astype(np.float32) / 32768, rate, 16000)
        samples = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        rate = 16000
    if channels > 1:  # the speech on channel 0, a quieter copy on the others
        samples = np.stack([samples] + [samples // 4] * (channels - 1), axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _decode_in_chunks(decoder: ContainerDecoder, data: bytes, seed: int) -> np.ndarray:
    pieces = [decoder.accept(chunk) for chunk in random_chunks(data, np.random.default_rng(seed), 1, 1500)]
    return np.concatenate([*pieces, decoder.flush()])


def _config(encoding: int, rate: int = 0, **fields: object) -> asr_pb2.StreamingRecognitionConfig:
    recognition = asr_pb2.RecognitionConfig(encoding=encoding, sample_rate_hertz=rate)
    for name, value in fields.items():
        setattr(recognition, name, value)
    return asr_pb2.StreamingRecognitionConfig(config=recognition, interim_results=False)


# -- the decoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_flac_in_random_chunks_decodes_exactly_as_the_whole_file(seed: int) -> None:
    pcm, rate = synthesize(SENTENCE)
    data = _encoded(pcm, rate, "FLAC", "PCM_16", channels=2)
    whole, _ = sf.read(io.BytesIO(data), dtype="float32")
    decoded = _decode_in_chunks(ContainerDecoder(asr_pb2.FLAC, rate, 0, rate), data, seed)
    np.testing.assert_array_equal(decoded, whole[:, 0])


def test_opus_in_random_chunks_decodes_as_the_whole_file() -> None:
    pcm, rate = synthesize(SENTENCE)
    data = _encoded(pcm, rate, "OGG", "OPUS")
    whole, _ = sf.read(io.BytesIO(data), dtype="float32")
    decoded = _decode_in_chunks(ContainerDecoder(asr_pb2.OGG_OPUS, 0, None, 16000), data, 0)
    assert decoded.shape == whole.shape
    # libsndfile trims the last packet differently after a seek: the final 20 ms may differ.
    np.testing.assert_allclose(decoded[:-320], whole[:-320], atol=1e-5)


def test_header_checks_and_cut_or_wrong_streams() -> None:
    pcm, rate = synthesize(SENTENCE)
    flac = _encoded(pcm, rate, "FLAC", "PCM_16")
    opus = _encoded(pcm, rate, "OGG", "OPUS")
    assert ogg_pages_end(opus) == len(opus) and ogg_pages_end(opus[:-5]) < len(opus) - 5
    cases = [
        (ContainerDecoder(asr_pb2.FLAC, 16000, None, 16000), flac, f"header says {rate}"),
        (ContainerDecoder(asr_pb2.FLAC, 0, 3, 16000), flac, "selected_channel 3 does not exist"),
        (ContainerDecoder(asr_pb2.FLAC, 0, None, 16000), opus, "the audio is OGG"),
        (ContainerDecoder(asr_pb2.FLAC, 0, None, 16000), flac[: len(flac) - 300], "ends inside a frame"),
        (ContainerDecoder(asr_pb2.OGG_OPUS, 0, None, 16000), opus[: len(opus) - 300], "ends inside an Ogg page"),
        (ContainerDecoder(asr_pb2.OGG_OPUS, 0, None, 16000), b"\x00" * 5000, "not a OGG_OPUS stream"),
    ]
    for decoder, data, message in cases:
        with pytest.raises(AudioFormatError, match=message):
            decoder.accept(data)
            decoder.flush()


# -- through the server --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> Iterator[ServerThread]:
    with ServerThread([random_model_dir]) as running:
        yield running


def test_a_flac_stream_gives_what_the_same_linear16_stream_gives(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub
) -> None:
    pcm, rate = synthesize(SENTENCE)
    linear = stream(stub, _config(asr_pb2.LINEAR16, rate), fixed_chunks(pcm, 3200))
    data = _encoded(pcm, rate, "FLAC", "PCM_16")
    flac = stream(stub, _config(asr_pb2.FLAC), random_chunks(data, np.random.default_rng(2), 1, 800))
    assert finals(flac) == finals(linear)
    assert flac[-1].audio_processed == linear[-1].audio_processed
    recognized = stub.Recognize(
        asr_pb2.RecognizeRequest(config=asr_pb2.RecognitionConfig(encoding=asr_pb2.FLAC), audio_content=data)
    )
    assert [r.alternatives[0].transcript for r in recognized.results] == finals(linear)


def test_a_cut_or_mislabelled_container_stream_is_invalid_argument(
    server: ServerThread, stub: asr_pb2_grpc.RecognizerStub
) -> None:
    pcm, rate = synthesize(SENTENCE)
    opus = _encoded(pcm, rate, "OGG", "OPUS")
    for config, data, message in [
        (_config(asr_pb2.OGG_OPUS), opus[: len(opus) // 2 + 7], "ends inside an Ogg page"),
        (_config(asr_pb2.FLAC), opus, "the audio is OGG"),
        (_config(asr_pb2.OGG_OPUS, 8000), opus, "header says 16000"),
    ]:
        with pytest.raises(grpc.RpcError) as error:
            stream(stub, config, fixed_chunks(data, 1000))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()
    with pytest.raises(grpc.RpcError) as rate_error:
        stream(stub, _config(asr_pb2.LINEAR16, 0), [pcm[:3200]])
    assert rate_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "got 0" in rate_error.value.details() and "header" not in rate_error.value.details()


def test_the_bundled_model_transcribes_an_opus_stream() -> None:
    pcm, rate = synthesize(SENTENCE)
    data = _encoded(pcm, rate, "OGG", "OPUS")
    with ServerThread([Path(DEFAULT_MODEL_DIR)]) as running, grpc.insecure_channel(running.target) as channel:
        responses = stream(asr_pb2_grpc.RecognizerStub(channel), _config(asr_pb2.OGG_OPUS), fixed_chunks(data, 500))
    text = " ".join(finals(responses))
    assert jiwer.wer(SENTENCE, text) <= 0.34, text
