"""Two overlapping talkers through a real server and the bundled t-SOT model (``models/en-small-tsot``):
a mixture synthesized at test time comes back as two virtual channels; one talker stays one
channel; the CLI shows both.

Voices are from the held-out pool (``training.voices``): the model never trained on them.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import grpc
import jiwer
import numpy as np
import pytest
import soundfile as sf
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_harness import ServerThread, config, fixed_chunks, requires_espeak, stream

from server.model.checkpoint import DEFAULT_MODEL_DIR, read_config
from training.synth import synthesize_sentence
from training.tsot.cpwer import best_permutation

TSOT_MODEL_DIR = Path(DEFAULT_MODEL_DIR).parent / "en-small-tsot"
pytestmark = [
    requires_espeak,
    pytest.mark.skipif(
        not (TSOT_MODEL_DIR.is_dir() and read_config(TSOT_MODEL_DIR).multi_talker), reason="no bundled t-SOT model"
    ),
]

RATE = 16000
# (first talker, second talker, the second's start in seconds after the first's): sentences and
# voices the model never trained on (hand-written dev-style sentences, held-out voices).
MIXTURES = [
    (("please call me back tomorrow morning", "en-us+m7"), ("the weather is nice today", "en+f4"), 1.0),
    (("we will meet at the station at nine", "en+klatt3"), ("how much does the blue one cost", "en-us+f4"), 1.5),
    (("she bought three apples at the market", "en+f4"), ("turn left at the next light", "en-us+m7"), 0.7),
]
# cpWER of the three mixtures together: 51% with models/en-small-tsot (session 12; issue 15's
# target on its hidden set is 25%, not reached yet: docs/tsot.md). A one-channel model cannot
# go below about half here (one talker's words all missing), and gives no second channel.
MAX_CPWER = 0.65
MAX_SINGLE_WER = 0.15


def _speech(text: str, voice: str) -> np.ndarray:
    samples, _ = synthesize_sentence(text, voice=voice, sample_rate=RATE)
    return samples


def _mixture(first: np.ndarray, second: np.ndarray, offset_s: float) -> bytes:
    """Equal-RMS mixture, the second from ``offset_s``, as LINEAR16 bytes."""
    second = second * (np.sqrt(np.mean(first**2)) / np.sqrt(np.mean(second**2)))
    offset = int(offset_s * RATE)
    out = np.zeros(max(first.size, offset + second.size), np.float32)
    out[: first.size] += first
    out[offset : offset + second.size] += second
    out *= 0.9 / max(1e-6, float(np.abs(out).max()))
    return (out * 32767).astype("<i2").tobytes()


def _pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def _channel_texts(responses: list[asr_pb2.StreamingRecognizeResponse]) -> dict[int, str]:
    texts: dict[int, list[str]] = {}
    for response in responses:
        for result in response.results:
            if result.is_final and result.alternatives[0].transcript:
                texts.setdefault(result.channel, []).append(result.alternatives[0].transcript)
    return {channel: " ".join(parts) for channel, parts in texts.items()}


@pytest.fixture(scope="module")
def server() -> ServerThread:
    with ServerThread([TSOT_MODEL_DIR], max_streams=8, max_batch_size=8, max_wait_ms=20) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server: ServerThread):
    with grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)


def _recognize(stub: asr_pb2_grpc.RecognizerStub, pcm: bytes, multi_talker: bool) -> dict[int, str]:
    request = config(RATE, multi_talker=multi_talker, interim_results=False)
    return _channel_texts(stream(stub, request, fixed_chunks(pcm, 3200)))


def test_two_overlapping_talkers_come_back_as_two_channels(stub: asr_pb2_grpc.RecognizerStub) -> None:
    errors = words = two_channels = 0
    for (text_a, voice_a), (text_b, voice_b), offset in MIXTURES:
        pcm = _mixture(_speech(text_a, voice_a), _speech(text_b, voice_b), offset)
        channels = _recognize(stub, pcm, multi_talker=True)
        assert set(channels) <= {0, 1}
        two_channels += set(channels) == {0, 1}
        hypotheses = [channels.get(0, ""), channels.get(1, "")]
        permuted = best_permutation([text_a, text_b], hypotheses)
        errors += permuted.errors
        words += permuted.reference_words
    print(f"cpWER of the test mixtures: {errors / words:.1%}")
    assert errors / words <= MAX_CPWER
    assert two_channels >= 2, "overlapping talkers come back on two channels"


def test_one_talker_with_multi_talker_on_stays_on_one_channel(stub: asr_pb2_grpc.RecognizerStub) -> None:
    references, hypotheses = [], []
    for (text, voice), _, _ in MIXTURES:
        pcm = _pcm(_speech(text, voice))
        channels = _recognize(stub, pcm, multi_talker=True)
        assert set(channels) == {0}, channels
        references.append(text)
        hypotheses.append(channels[0])
        # The same model without multi_talker is a one-talker model: channel 0 only, same words.
        assert set(_recognize(stub, pcm, multi_talker=False)) == {0}
    print(f"one-talker WER with multi_talker on: {jiwer.wer(references, hypotheses):.1%}")
    assert jiwer.wer(references, hypotheses) <= MAX_SINGLE_WER


def test_multi_talker_off_gives_one_channel_even_for_a_mixture(stub: asr_pb2_grpc.RecognizerStub) -> None:
    (text_a, voice_a), (text_b, voice_b), offset = MIXTURES[0]
    pcm = _mixture(_speech(text_a, voice_a), _speech(text_b, voice_b), offset)
    assert set(_recognize(stub, pcm, multi_talker=False)) == {0}


def test_cli_shows_each_speaker(server: ServerThread, tmp_path: Path) -> None:
    (text_a, voice_a), (text_b, voice_b), offset = MIXTURES[0]
    pcm = _mixture(_speech(text_a, voice_a), _speech(text_b, voice_b), offset)
    path = tmp_path / "two.wav"
    sf.write(str(path), np.frombuffer(pcm, "<i2"), RATE, subtype="PCM_16")
    cli = [sys.executable, "-m", "asr_client.cli", "transcribe", str(path), "--server", server.target]
    shown = subprocess.run([*cli, "--multi-talker"], capture_output=True, timeout=120, check=True).stdout.decode()
    assert "[speaker 1]" in shown and "[speaker 2]" in shown
    as_json = subprocess.run([*cli, "--multi-talker", "--json"], capture_output=True, timeout=120, check=True)
    lines = [line for line in io.StringIO(as_json.stdout.decode()) if '"channel"' in line]
    assert lines, "each JSON result names its channel"
