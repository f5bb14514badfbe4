"""Where speech begins and ends in one stream's audio: Silero VAD (v6, the ``silero-vad`` wheel's
ONNX model, MIT) run by onnxruntime, one shared session for all streams, each stream's recurrent
state held as data (decision 0025).

Why not the wheel's ``VADIterator``: it keeps the recurrent state inside its model wrapper, one
onnxruntime session per stream (about 80 ms and 20 MB to open each); here a stream's state is a
``DetectorState`` passed in and out, and streams share one session.

The decision per 32-ms window is Silero's usual hysteresis: speech starts at the first window whose
probability reaches ``threshold`` and ends once the probability has stayed below
``threshold - release`` for ``min_silence_ms``; a begin is reported ``begin_pad_ms`` early and an
end moved by ``end_offset_ms``, with settings chosen on dev text (benchmarks/voice_activity.py
--sentences dev).
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

RATE = 16000  # Silero's 16-kHz model; the decoders deliver the model's rate, 16 kHz
WINDOW = 512  # samples per decision (32 ms)
CONTEXT = 64  # samples of the previous window the model sees with each new one
STATE_SHAPE = (2, 1, 128)


@dataclass(frozen=True)
class DetectorSettings:
    threshold: float = 0.5
    release: float = 0.15
    # Longer than the pauses at commas (espeak-ng at 140 words/min: 250-350 ms), so a sentence is one span.
    min_silence_ms: int = 500
    begin_pad_ms: int = 15  # a begin is reported this much before its first speech window
    # An end is reported this much after the first quiet window; negative because Silero's
    # probability falls some 80 ms after the voice does (measured on dev text).
    end_offset_ms: int = -80


class SpeechEdge(NamedTuple):
    """A change found in the audio: speech began (``begins``) or ended, at ``at_ms`` of the stream."""

    begins: bool
    at_ms: int


@dataclass(frozen=True)
class DetectorState:
    """One stream's detector. ``rnn``: (2, 1, 128) float32; ``context``: (64,) float32; ``pending``:
    (< 512,) float32 samples not yet a whole window; ``windows``: windows decided so far."""

    rnn: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    windows: int = 0
    in_speech: bool = False
    quiet_since: int | None = None  # window index where the current run of low probability began


class SpeechDetector:
    """Silero VAD over any number of streams (a stateless runner; the state is the caller's)."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: many streams call it, each for a few hundred microseconds per window.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
        self._session = onnxruntime.InferenceSession(model.read_bytes(), options, providers=["CPUExecutionProvider"])
        self._rate = np.array(RATE, dtype=np.int64)
        self.settings = settings or DetectorSettings()

    def probability(self, state: DetectorState, window: np.ndarray) -> tuple[DetectorState, float]:
        """Speech probability of one (512,) window, and the state after it."""
        framed = np.concatenate([state.context, window])[None, :]  # (1, 576)
        output, rnn = self._session.run(None, {"input": framed, "state": state.rnn, "sr": self._rate})
        return replace(state, rnn=rnn, context=framed[0, -CONTEXT:]), float(output[0, 0])

    def accept(self, state: DetectorState, samples: np.ndarray) -> tuple[DetectorState, list[SpeechEdge]]:
        """Feed (n,) float32 samples at 16 kHz; the edges they complete, in order."""
        audio = np.concatenate([state.pending, samples.astype(np.float32, copy=False)])
        edges: list[SpeechEdge] = []
        whole = audio.size // WINDOW * WINDOW
        for start in range(0, whole, WINDOW):
            state, speech = self.probability(state, audio[start : start + WINDOW])
            state, edge = self._decide(state, speech)
            if edge is not None:
                edges.append(edge)
        return replace(state, pending=audio[whole:].copy()), edges

    def finish(self, state: DetectorState) -> list[SpeechEdge]:
        """At the end of the audio: the end of speech still going on, if any."""
        if not state.in_speech:
            return []
        end = state.quiet_since if state.quiet_since is not None else state.windows
        return [SpeechEdge(False, max(0, self._ms(end) + self.settings.end_offset_ms))]

    def _decide(self, state: DetectorState, speech: float) -> tuple[DetectorState, SpeechEdge | None]:
        """The hysteresis after one window of probability ``speech``."""
        settings, index = self.settings, state.windows
        state = replace(state, windows=index + 1)
        if speech >= settings.threshold:
            if not state.in_speech:
                return replace(state, in_speech=True, quiet_since=None), SpeechEdge(
                    True, max(0, self._ms(index) - settings.begin_pad_ms)
                )
            return replace(state, quiet_since=None), None
        if not state.in_speech or speech >= settings.threshold - settings.release:
            return state, None
        quiet_since = index if state.quiet_since is None else state.quiet_since
        if self._ms(index + 1 - quiet_since) < settings.min_silence_ms:
            return replace(state, quiet_since=quiet_since), None
        edge = SpeechEdge(False, max(0, self._ms(quiet_since) + settings.end_offset_ms))
        return replace(state, in_speech=False, quiet_since=None), edge

    @staticmethod
    def _ms(windows: int) -> int:
        return windows * WINDOW * 1000 // RATE


@functools.cache
def shared_detector() -> SpeechDetector:
    """The server's one detector (opened on the first stream that asks for voice activity)."""
    return SpeechDetector()
