"""One stream's decoder: fbank frames in, step windows out, each step's slice in, results out.

No asyncio and no clock: the session (server) or a plain loop (evaluation, benchmarks,
tests) feeds it audio and the outputs of batched steps, and it returns what to send. It
owns everything per stream between the audio and the text: the front end, the feature
windows, the K hypotheses of the utterance, endpointing, the final's rescoring, and
which partial results are worth sending.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import torch

from server.engine.batch import StreamStepOutput, Window, WindowStart
from server.engine.beam_history import BeamHistory
from server.engine.endpoint import EndpointConfig, UtteranceSpan, endpoint_rule
from server.engine.nbest import NbestOptions, final_results, partial_stability
from server.engine.transcript import Result, Utterance, utterance_results
from server.model.frames import fbank_frames_per_second
from server.model.frontend import FbankStream
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows
from server.search.context_graph import ContextGraph
from server.search.options import Search


@dataclass(frozen=True)
class StreamOptions:
    """Per-request recognition options, already validated by the API layer."""

    interim_results: bool = True
    word_times: bool = False
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    # Multi-hot weights over the model's languages, or None for all of them.
    language_weights: np.ndarray | None = None
    # Reported in results when known (one language selected, or a monolingual model).
    language_code: str = ""
    multi_talker: bool = False
    # Finals: up to this many distinct transcripts (N-best), and word confidences (with word_times).
    max_alternatives: int = 1
    word_confidence: bool = False
    # Phrase boosting: the request's phrases as a context graph of the model's tokens, or None.
    context_graph: ContextGraph | None = None


@dataclass(frozen=True)
class Update:
    """Results to send to the client, and the audio recognised so far."""

    results: list[Result]
    audio_processed_ms: int


class StreamDecoder:
    """Decodes one stream with ``model`` under ``search`` (whose state rows a ``BatchStepper`` keeps)."""

    def __init__(self, model: StreamingTransducer, search: Search, options: StreamOptions) -> None:
        self.model = model
        self.options = options
        self._frame_ms = model.frame_shift_ms
        self._fbank_rate = fbank_frames_per_second(model.config.features)
        self._fbank = FbankStream(model.config.features)
        self._windows = FeatureWindows(model.feature_window, model.feature_shift, model.config.features.num_mel_bins)
        self._final_windows: list[tuple[np.ndarray, int]] | None = None  # set at end of input
        self._rules = options.endpoint.rules()
        self._nbest = NbestOptions(options.max_alternatives, options.word_confidence, options.word_times)
        # Multi-talker finals are rescored per virtual channel (rescoring.final_scores' cc_id).
        self._history = BeamHistory(model.tokenizer, search.final_rescorer, options.context_graph)
        self._next_start = WindowStart.NEW_STREAM
        self._utterance = self._utterance_of([])
        self._utterance_start = 0  # first encoder frame after the previous endpoint
        self._utterance_index = 0
        self._last_partial: tuple[tuple[int, tuple[int, ...]], ...] = ()
        self._frames_done = 0  # encoder frames through the model
        self._features_received = 0  # fbank frames produced so far
        self._features_consumed = 0  # fbank frames the window start has moved past
        # (cumulative fbank frames, arrival time) per audio chunk, to date windows.
        self._arrivals: list[tuple[int, float]] = []
        self.input_done = False
        self.done = False  # the final result has been produced

    # -- audio in --------------------------------------------------------------------------
    def accept_audio(self, samples: np.ndarray, arrived_at: float = 0.0) -> None:
        """Feed float32 samples (n,) at the model's rate that arrived at ``arrived_at`` (monotonic s)."""
        self.accept_features(self._fbank.accept(samples), arrived_at)

    def accept_features(self, frames: np.ndarray, arrived_at: float = 0.0) -> None:
        """Feed fbank frames (n, num_mel_bins)."""
        if self.input_done or not frames.shape[0]:
            return
        self._windows.push(frames)
        self._features_received += frames.shape[0]
        self._arrivals.append((self._features_received, arrived_at))

    def finish(self, arrived_at: float = 0.0) -> None:
        """End of audio: the remainder is flushed in final windows."""
        if self.input_done:
            return
        self.input_done = True
        self._arrivals.append((self._features_received + 1, arrived_at))
        self._final_windows = self._windows.final_windows()

    @property
    def backlog_seconds(self) -> float:
        """Audio received but not yet through the model."""
        return (self._features_received - self._features_consumed) / self._fbank_rate

    # -- windows out -----------------------------------------------------------------------
    def has_window(self) -> bool:
        return not self.done and (self._windows.ready() or bool(self._final_windows))

    def next_window(self) -> Window:
        """The next window for a model step (only when ``has_window``)."""
        if self._windows.ready():
            features, num_frames, is_final = self._windows.pop_window(), self._windows.window, False
            end = self._features_consumed + self._windows.window
            self._features_consumed += self._windows.shift
        else:
            assert self._final_windows, "next_window called without a window"
            is_final = len(self._final_windows) == 1
            features, num_frames = self._final_windows.pop(0)
            end = self._features_received + 1
            self._features_consumed = min(self._features_consumed + self._windows.shift, self._features_received)
        start, self._next_start = self._next_start, WindowStart.CONTINUE
        return Window(
            features,
            num_frames,
            self._ready_time(end),
            is_final,
            start,
            self.options.language_weights,
            self.options.context_graph,
            self.options.multi_talker,
        )

    def _ready_time(self, frames_needed: int) -> float:
        """Arrival time of the audio chunk that brought the frame count to ``frames_needed``."""
        index = bisect.bisect_left(self._arrivals, (frames_needed, float("-inf")))
        if index == len(self._arrivals):
            return self._arrivals[-1][1] if self._arrivals else 0.0
        ready = self._arrivals[index][1]
        # Later windows need more frames: the arrivals before this one are of no more use.
        del self._arrivals[:index]
        return ready

    # -- step results in, text out ---------------------------------------------------------
    @property
    def audio_processed_ms(self) -> int:
        """Audio of this stream through the model so far."""
        return self._frames_done * self._frame_ms

    def apply(self, window: Window, output: StreamStepOutput) -> Update | None:
        """Take this stream's slice of a step run on ``window``; returns what to send, if anything."""
        self._frames_done += output.num_frames
        self._history.extend(output.update, output.ctc_log_probs)
        self._utterance = self._utterance_of(self._history.best())
        span = UtteranceSpan(
            self._utterance_start,
            self._utterance.first_token_frame,
            self._utterance.last_token_frame,
            self._frames_done,
        )
        if window.is_final:
            return self._update(self._finalise(), force=True)
        if endpoint_rule(self._rules, span, self._frame_ms) is not None:
            self._next_start = WindowStart.NEW_UTTERANCE
            return self._update(self._finalise())
        return self._update(self._partial())

    def flush(self) -> Update:
        """Finalise without a model step: input ended with too little audio for another window."""
        assert self.input_done and not self.has_window(), "flush is for a stream with no window left"
        update = self._update(self._finalise(), force=True)
        assert update is not None
        return update

    def _update(self, results: list[Result], force: bool = False) -> Update | None:
        if force:
            self.done = True
        if not results and not force:
            return None
        return Update(results, self._frames_done * self._frame_ms)

    def _utterance_of(self, hypothesis: list[tuple[int, int]]) -> Utterance:
        return Utterance.of(hypothesis, self.model.tokenizer.cc_id, self.options.multi_talker)

    def _results(self, is_final: bool) -> list[Result]:
        return utterance_results(
            self._utterance,
            self.model.tokenizer,
            is_final=is_final,
            utterance_index=self._utterance_index,
            frame_shift_ms=self._frame_ms,
            with_words=self.options.word_times,
            language_code=self._language_code(),
        )

    def _language_code(self) -> str:
        """The selected language, or with several, the one the utterance's tokens belong to (CMM)."""
        if self.options.language_code or self.model.token_languages is None:
            return self.options.language_code
        tokens = [token for channel in self._utterance.tokens.values() for token, _ in channel]
        weights = self.options.language_weights
        mask = torch.ones(len(self.model.config.languages)) if weights is None else torch.from_numpy(weights)
        return self.model.config.languages[self.model.utterance_language(tokens, mask)]

    def _finalise(self) -> list[Result]:
        ranked = self._history.ranked()
        self._utterance = self._utterance_of(ranked[0][0] if ranked else [])
        results = final_results(
            self._results(is_final=True),
            ranked,
            self.model.tokenizer,
            self._nbest,
            frame_shift_ms=self._frame_ms,
            multi_talker=self.options.multi_talker,
        )
        if results:
            self._utterance_index += 1
        self._history.reset()
        self._utterance = self._utterance_of([])
        self._last_partial = ()
        self._utterance_start = self._frames_done
        return results

    def _partial(self) -> list[Result]:
        if not self.options.interim_results:
            return []
        # Send a partial only when the hypothesis changed (beam search may revise tokens, so
        # compare the tokens themselves, not only how many there are).
        signature = tuple(
            (channel, tuple(token for token, _ in tokens)) for channel, tokens in sorted(self._utterance.tokens.items())
        )
        if signature == self._last_partial:
            return []
        self._last_partial = signature
        results = self._results(is_final=False)
        return partial_stability(results, self._history.live(), self.model.tokenizer, self.options.multi_talker)
