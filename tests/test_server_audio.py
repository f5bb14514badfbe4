"""Audio decoding on the server: G.711, chunk boundaries, channels, resampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from asr_client.api.asr.v1 import asr_pb2

from server.api.audio import ALAW_TABLE, MULAW_TABLE, AudioDecoder, AudioFormatError, decode_samples


def test_g711_tables_match_the_standard() -> None:
    # Reference points of ITU-T G.711 (as audioop computes them).
    assert MULAW_TABLE[0xFF] == 0 and MULAW_TABLE[0x7F] == 0
    assert MULAW_TABLE[0x00] == -32124 and MULAW_TABLE[0x80] == 32124
    assert ALAW_TABLE[0xD5] == 8 and ALAW_TABLE[0x55] == -8
    assert ALAW_TABLE[0xAA] == 32256 and ALAW_TABLE[0x2A] == -32256
    # Both are odd-symmetric: flipping the sign bit negates the sample.
    codes = np.arange(128)
    assert np.array_equal(MULAW_TABLE[codes], -MULAW_TABLE[codes + 128])
    assert np.array_equal(ALAW_TABLE[codes], -ALAW_TABLE[codes + 128])


def test_g711_tables_equal_audioop_where_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    every_code = bytes(range(256))
    assert np.array_equal(np.frombuffer(audioop.ulaw2lin(every_code, 2), "<i2"), MULAW_TABLE)
    assert np.array_equal(np.frombuffer(audioop.alaw2lin(every_code, 2), "<i2"), ALAW_TABLE)


def test_linear16_is_little_endian() -> None:
    assert decode_samples(b"\x01\x00\xff\xff\x00\x80", asr_pb2.LINEAR16).tolist() == [1, -1, -32768]
    assert decode_samples(b"\x01\x00", asr_pb2.ENCODING_UNSPECIFIED).tolist() == [1]


def _decode_all(decoder: AudioDecoder, chunks: list[bytes]) -> np.ndarray:
    parts = [decoder.accept(chunk) for chunk in chunks] + [decoder.flush()]
    return np.concatenate(parts)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_output_does_not_depend_on_chunk_boundaries(rate: int) -> None:
    rng = np.random.default_rng(rate)
    pcm = (rng.standard_normal(rate) * 3000).astype("<i2").tobytes()  # 1 s
    whole = _decode_all(AudioDecoder(asr_pb2.LINEAR16, rate, 1, None, 16000), [pcm])
    cuts = np.sort(rng.choice(np.arange(1, len(pcm) // 2), 40, replace=False)) * 2
    pieces = [pcm[a:b] for a, b in zip([0, *cuts], [*cuts, len(pcm)], strict=True)]
    chunked = _decode_all(AudioDecoder(asr_pb2.LINEAR16, rate, 1, None, 16000), pieces)
    assert chunked.dtype == np.float32
    assert abs(whole.size - 16000) <= 1
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_channels_are_downmixed_or_selected_even_when_frames_span_chunks() -> None:
    left = np.array([1000, 2000, 3000, 4000], "<i2")
    right = np.array([-1000, 0, 1000, 6000], "<i2")
    stereo = np.stack([left, right], axis=1).astype("<i2").tobytes()
    pieces = [stereo[:2], stereo[2:6], stereo[6:]]  # split inside a frame
    mixed = _decode_all(AudioDecoder(asr_pb2.LINEAR16, 16000, 2, None, 16000), pieces)
    np.testing.assert_allclose(mixed * 32768, (left.astype(float) + right) / 2)
    selected = _decode_all(AudioDecoder(asr_pb2.LINEAR16, 16000, 2, 1, 16000), pieces)
    np.testing.assert_allclose(selected * 32768, right)


def test_mulaw_and_alaw_decode_through_the_tables() -> None:
    codes = bytes(range(256))
    for encoding, table in ((asr_pb2.MULAW, MULAW_TABLE), (asr_pb2.ALAW, ALAW_TABLE)):
        out = _decode_all(AudioDecoder(encoding, 16000, 1, None, 16000), [codes[:100], codes[100:]])
        np.testing.assert_allclose(out * 32768, table.astype(float))


def test_odd_length_linear16_chunk_is_an_error() -> None:
    decoder = AudioDecoder(asr_pb2.LINEAR16, 16000, 1, None, 16000)
    decoder.accept(b"\x00\x00")
    with pytest.raises(AudioFormatError, match="odd-length chunk of 3 bytes"):
        decoder.accept(b"\x00\x00\x00")
    # One-byte encodings have no such constraint.
    assert AudioDecoder(asr_pb2.MULAW, 8000, 1, None, 8000).accept(b"\xff" * 3).size == 3


def test_audio_after_the_end_is_dropped() -> None:
    """A reader may hand over one more chunk after the stream's audio ended (drain, timeout)."""
    decoder = AudioDecoder(asr_pb2.LINEAR16, 22050, 1, None, 16000)
    assert decoder.accept(np.zeros(2205, "<i2").tobytes()).size > 0
    decoder.flush()
    assert decoder.accept(np.ones(2205, "<i2").tobytes()).size == 0
    assert decoder.flush().size == 0
