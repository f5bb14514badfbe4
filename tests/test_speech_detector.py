"""The Silero voice activity detector behind the voice activity events, on speech made at test time."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from asr_harness import requires_espeak, synthesize

from server.api.speech_detector import RATE, DetectorState, SpeechDetector, SpeechEdge, shared_detector

pytestmark = requires_espeak
TOLERANCE_S = 0.3  # the production-API issue's bound on event times


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return shared_detector()


def _speech(text: str, words_per_minute: int = 160) -> np.ndarray:
    pcm, rate = synthesize(text, words_per_minute=words_per_minute)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    return soxr.resample(samples, rate, RATE).astype(np.float32)


def _voice_span(samples: np.ndarray, offset_s: float) -> tuple[float, float]:
    loud = np.nonzero(np.abs(samples) > 0.02 * np.abs(samples).max())[0]
    return offset_s + loud[0] / RATE, offset_s + loud[-1] / RATE


def _run(detector: SpeechDetector, audio: np.ndarray, chunk: int) -> list[SpeechEdge]:
    state, edges = DetectorState(), []
    for start in range(0, audio.size, chunk):
        state, found = detector.accept(state, audio[start : start + chunk])
        edges += found
    return edges + detector.finish(state)


def test_silence_and_faint_noise_hold_no_speech(detector: SpeechDetector) -> None:
    noise = np.random.default_rng(0).normal(0, 0.002, 5 * RATE).astype(np.float32)
    assert _run(detector, np.zeros(3 * RATE, np.float32), 1600) == []
    assert _run(detector, noise, 1600) == []


def test_each_sentence_is_one_span_within_the_tolerance(detector: SpeechDetector) -> None:
    # The first sentence pauses at its commas: those pauses must not end the span.
    first = _speech("When the meeting ends, please send the notes, the slides, and the budget.", 140)
    second = _speech("call me back tomorrow morning")
    gap = np.zeros(int(1.5 * RATE), np.float32)
    audio = np.concatenate([gap, first, gap, second, gap])
    truth = [_voice_span(first, 1.5), _voice_span(second, 3.0 + first.size / RATE)]
    edges = _run(detector, audio, 1600)
    assert [edge.begins for edge in edges] == [True, False, True, False]
    for (begin, end), (start, stop) in zip(zip(edges[::2], edges[1::2], strict=True), truth, strict=True):
        assert abs(begin.at_ms / 1000 - start) <= TOLERANCE_S, (begin, start)
        assert abs(end.at_ms / 1000 - stop) <= TOLERANCE_S, (end, stop)


def test_edges_do_not_depend_on_how_the_audio_is_cut(detector: SpeechDetector) -> None:
    """The state is all in ``DetectorState``: 10-ms chunks, odd chunks and one piece agree."""
    audio = np.concatenate([np.zeros(RATE, np.float32), _speech("the meeting is on thursday"), np.zeros(RATE)])
    whole = _run(detector, audio.astype(np.float32), audio.size)
    assert len(whole) == 2
    assert _run(detector, audio.astype(np.float32), 160) == whole
    assert _run(detector, audio.astype(np.float32), 777) == whole


def test_speech_running_at_the_end_of_the_audio_is_ended_there(detector: SpeechDetector) -> None:
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), _speech("the meeting is on thursday")])
    edges = _run(detector, audio, 1600)
    assert [edge.begins for edge in edges] == [True, False]
    assert edges[1].at_ms <= audio.size * 1000 // RATE


def test_streams_share_the_detector_but_not_their_state(detector: SpeechDetector) -> None:
    speech = np.concatenate([np.zeros(RATE // 2, np.float32), _speech("please call me back")])
    silence = np.zeros(speech.size, np.float32)
    talking, quiet = DetectorState(), DetectorState()
    heard: list[SpeechEdge] = []
    for start in range(0, speech.size, 1600):  # interleaved, as the server's streams are
        talking, found = detector.accept(talking, speech[start : start + 1600])
        heard += found
        quiet, nothing = detector.accept(quiet, silence[start : start + 1600])
        assert nothing == []
    assert [edge.begins for edge in heard] == [True]
