"""The ``asr_client`` library: sync and asyncio clients, file streaming, no torch needed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from asr_client import AsrClient, AsyncAsrClient, asr_pb2, read_audio_file, recognition_config
from asr_client.audio import chunk_size_bytes, paced, read_stream_chunks, split_chunks
from asr_harness import ServerThread, config, finals, fixed_chunks, requires_espeak, stream, synthesize

TEXT = "she said that the weather would be fine"


@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> ServerThread:
    with ServerThread([random_model_dir]) as running:
        yield running


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    return synthesize(TEXT)


def test_client_package_does_not_import_torch() -> None:
    code = "import sys, asr_client, asr_client.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_audio_helpers(tmp_path: Path) -> None:
    stereo = (np.arange(2 * 4410, dtype=np.int16).reshape(-1, 2) % 1000).astype(np.int16)
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 44100)
    audio = read_audio_file(path)
    assert (audio.sample_rate, audio.channels) == (44100, 2)
    assert audio.data == stereo.astype("<i2").tobytes()
    assert audio.duration_seconds == pytest.approx(0.1)
    assert chunk_size_bytes(44100, 2, 100) == 4410 * 2 * 2
    assert b"".join(split_chunks(audio.data, 1000)) == audio.data
    started = time.monotonic()
    assert list(paced([b"ab" * 800] * 3, 16000 * 2, speed=2)) == [b"ab" * 800] * 3
    assert 0.07 <= time.monotonic() - started < 1  # 0.15 s of audio at twice real time
    with path.open("rb") as stream_:
        assert all(len(chunk) % 2 == 0 for chunk in read_stream_chunks(stream_, 1001))


@requires_espeak
def test_sync_client_streams_iterators_and_files(
    server: ServerThread, speech: tuple[bytes, int], tmp_path: Path
) -> None:
    pcm, rate = speech
    with AsrClient(server.target) as client:
        expected = finals(stream(client.stub, config(rate), fixed_chunks(pcm, 3200)))
        got = finals(client.streaming_recognize(fixed_chunks(pcm, 1234), recognition_config(rate)))
        assert got == expected
        # A stereo 44.1 kHz FLAC, speech in both channels: downmixed on the server.
        mono = np.frombuffer(pcm, "<i2")
        path = tmp_path / "speech.flac"
        sf.write(path, np.stack([mono, mono], axis=1), rate)
        assert finals(client.stream_file(path, chunk_ms=80)) == expected
        response = client.recognize(pcm, recognition_config(rate))
        assert [r.alternatives[0].transcript for r in response.results] == expected
        models = client.list_models()
        assert [m.name for m in models] == [server.registry.default]


@requires_espeak
def test_breaking_out_of_a_stream_cancels_it(server: ServerThread, speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    with AsrClient(server.target) as client:
        chunks = paced(fixed_chunks(pcm, 3200), rate * 2, speed=1.0)
        for _response in client.streaming_recognize(chunks, recognition_config(rate)):
            break
    deadline = time.monotonic() + 5
    while server.active_streams() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_streams() == 0


@requires_espeak
def test_async_client_streams_an_async_iterator(server: ServerThread, speech: tuple[bytes, int]) -> None:
    pcm, rate = speech

    async def audio() -> AsyncIterator[bytes]:
        for chunk in fixed_chunks(pcm, 2000):
            await asyncio.sleep(0)
            yield chunk

    async def run() -> tuple[list[str], list[str], list[asr_pb2.ModelInfo]]:
        async with AsyncAsrClient(server.target) as client:
            streamed = [r async for r in client.streaming_recognize(audio(), recognition_config(rate))]
            response = await client.recognize(pcm, recognition_config(rate))
            models = await client.list_models()
        return finals(streamed), [r.alternatives[0].transcript for r in response.results], models

    streamed, recognized, models = asyncio.run(run())
    assert streamed and streamed == recognized
    assert models[0].name == server.registry.default
