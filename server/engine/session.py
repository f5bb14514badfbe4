"""One recognition stream inside the engine.

Audio (float32 at the model's rate) -> incremental fbank -> feature windows -> the
scheduler; the model's tokens -> utterance tracking, endpointing -> ``Update`` objects on
an asyncio queue that the API layer turns into responses. Everything here runs on the
event loop; a session has at most one window in a model step at a time, because each
step continues from the state the previous one left.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from server.engine.endpoint import EndpointConfig, Endpointer
from server.engine.transcript import Result, Utterance, utterance_results
from server.model.frontend import FbankStream
from server.model.transducer import StreamingTransducer
from server.model.windowing import FeatureWindows
from server.search.beam import BeamUpdate, relink
from server.search.rescoring import Rescorer, final_hypothesis

# Feature backlog (seconds of audio not yet through the model) above which the API layer
# stops reading a client's audio, so a client sending faster than real time is slowed by
# gRPC flow control instead of growing server memory.
MAX_BACKLOG_SECONDS = 10.0
# Encoder frames of CTC log-probabilities a stream keeps for its final's rescoring (60 s at
# 40 ms, 1.5 MB with 256 tokens); an utterance longer than that is finalised without them.
MAX_CTC_FRAMES = 1500


@dataclass(frozen=True)
class SessionOptions:
    """Per-request recognition options, already validated by the API layer."""

    interim_results: bool = True
    word_times: bool = False
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    # Multi-hot weights over the model's languages, or None for all of them.
    language_weights: np.ndarray | None = None
    # Reported in results when known (one language selected, or a monolingual model).
    language_code: str = ""
    multi_talker: bool = False


@dataclass(frozen=True)
class Update:
    """Results to send to the client, and the audio recognised so far."""

    results: list[Result]
    audio_processed_ms: int


@dataclass
class Window:
    """A feature window taken by the scheduler for the next model step."""

    features: np.ndarray
    num_frames: int
    ready_at: float  # when the audio that completed it arrived (monotonic)
    is_final: bool  # a zero-padded flush window at the end of the stream


class StreamSession:
    """State of one stream between the API layer and the scheduler."""

    def __init__(
        self,
        model: StreamingTransducer,
        slot: int,
        options: SessionOptions,
        submit: Callable[[StreamSession], None],
        release: Callable[[StreamSession], None],
        rescorer: Rescorer | None = None,
    ) -> None:
        self.model = model
        self._rescorer = None if options.multi_talker else rescorer  # the word LM knows one talker's sentences
        self.slot = slot
        self.options = options
        self._submit = submit
        self._release = release
        self._fbank = FbankStream(model.config.features)
        self._windows = FeatureWindows(model.feature_window, model.feature_shift, model.config.features.num_mel_bins)
        self._final_windows: list[tuple[np.ndarray, int]] | None = None  # set at end of input
        self._frame_shift_ms = model.frame_shift_ms
        self._cc_id = model.tokenizer.cc_id
        self._endpointer = Endpointer(options.endpoint, self._frame_shift_ms)
        self._utterance = self._new_utterance()
        self._utterance_index = 0
        self._last_partial: tuple[tuple[int, int], ...] = ()
        self._frames_done = 0  # encoder frames through the model
        self._features_received = 0  # fbank frames produced so far
        self._features_consumed = 0  # fbank frames the window start has moved past
        # (cumulative fbank frames, arrival time) per audio chunk, to date windows.
        self._arrivals: list[tuple[int, float]] = []
        self._updates: asyncio.Queue[Update | BaseException | None] = asyncio.Queue()
        self._capacity = asyncio.Event()
        self._capacity.set()
        # Lifecycle flags; the scheduler reads them.
        # Beam search: this utterance's K token histories (None: all empty, as after a reset).
        self._hypotheses: list[list[tuple[int, int]]] | None = None
        self._hypothesis_scores: list[float] = []  # their search scores, for the rescorer
        # The CTC head's log-probabilities (frames, V) of this utterance's encoder frames, for a
        # rescorer with a ctc_weight; None once the utterance outgrew MAX_CTC_FRAMES.
        self._ctc_chunks: list[torch.Tensor] | None = []
        self._ctc_frames = 0
        self.needs_init = True  # state row not yet initialised for this stream
        self.needs_decoder_reset = False
        self.queued = False  # in the scheduler's ready queue
        self.in_flight = False  # a window of this stream is in a model step
        self.closed = False
        self._input_done = False
        self._done = False

    def _new_utterance(self) -> Utterance:
        return Utterance(cc_id=self._cc_id, multi_talker=self.options.multi_talker)

    # -- audio in (API layer) ---------------------------------------------------------------
    def accept_audio(self, samples: np.ndarray) -> None:
        """Feed float32 samples at the model's rate."""
        if self._input_done or self.closed:
            return
        frames = self._fbank.accept(samples)
        if frames.shape[0]:
            self._windows.push(frames)
            self._features_received += frames.shape[0]
            self._arrivals.append((self._features_received, time.monotonic()))
            if self.backlog_seconds > MAX_BACKLOG_SECONDS:
                self._capacity.clear()
        self._maybe_submit()

    def finish(self) -> None:
        """End of audio: flush the remainder and finalise the last utterance."""
        if self._input_done or self.closed:
            return
        self._input_done = True
        self._arrivals.append((self._features_received + 1, time.monotonic()))
        self._maybe_submit()

    def fail(self, error: BaseException) -> None:
        """End the update stream with ``error`` (raised by ``updates``)."""
        self._updates.put_nowait(error)

    async def wait_for_capacity(self) -> None:
        """Wait while the backlog of unprocessed audio is above ``MAX_BACKLOG_SECONDS``."""
        await self._capacity.wait()

    @property
    def backlog_seconds(self) -> float:
        frame_ms = self.model.config.features.frame_shift_ms
        return (self._features_received - self._features_consumed) * frame_ms / 1000.0

    # -- results out (API layer) --------------------------------------------------------------
    async def updates(self) -> AsyncIterator[Update]:
        """Updates until the stream's final result; re-raises an error passed to ``fail``."""
        while True:
            item = await self._updates.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """The stream is over (finished, failed or cancelled): give back its slot."""
        if self.closed:
            return
        self.closed = True
        self._capacity.set()
        # A step in flight still writes this slot; the scheduler releases it afterwards.
        if not self.in_flight:
            self._release(self)

    # -- scheduler side -----------------------------------------------------------------------
    def _maybe_submit(self) -> None:
        """Queue this stream for a model step if it has a window and none is pending."""
        if self.queued or self.in_flight or self._done or self.closed:
            return
        if self._windows.ready():
            self._submit(self)
            return
        if self._input_done:
            if self._final_windows is None:
                self._final_windows = self._windows.final_windows()
            if self._final_windows:
                self._submit(self)
            else:
                # Nothing left for the model (too little audio for an encoder frame):
                # finalise right away.
                empty = np.zeros((0, self.model.config.features.num_mel_bins), np.float32)
                self.on_step(Window(empty, 0, time.monotonic(), is_final=True), [], 0)

    def take_window(self) -> Window:
        """The next window for a model step (only for a session that submitted itself)."""
        if self._windows.ready():
            features, num_frames, is_final = self._windows.pop_window(), self._windows.window, False
            end = self._features_consumed + self._windows.window
            self._features_consumed += self._windows.shift
        else:
            assert self._final_windows, "take_window called without a window"
            is_final = len(self._final_windows) == 1
            features, num_frames = self._final_windows.pop(0)
            end = self._features_received + 1
            consumed = self._features_consumed + self._windows.shift
            self._features_consumed = min(consumed, self._features_received)
        if self.backlog_seconds <= MAX_BACKLOG_SECONDS / 2:
            self._capacity.set()
        return Window(features, num_frames, self._ready_time(end), is_final)

    def _ready_time(self, frames_needed: int) -> float:
        """Arrival time of the audio chunk that brought the frame count to ``frames_needed``."""
        index = bisect.bisect_left(self._arrivals, (frames_needed, float("-inf")))
        if index == len(self._arrivals):
            return time.monotonic()
        ready = self._arrivals[index][1]
        # Later windows need more frames: the arrivals before this one are of no more use.
        del self._arrivals[:index]
        return ready

    def on_step(
        self,
        window: Window,
        tokens: list[tuple[int, int]] | None,
        num_frames: int,
        beams: BeamUpdate | None = None,
        ctc_log_probs: torch.Tensor | None = None,
    ) -> Update | None:
        """Take one model step's output; returns the update sent (if any) and resubmits.

        Greedy search gives the step's new ``tokens``; beam search gives ``beams``, which
        re-links this stream's hypotheses; the utterance is then the best one, which may
        revise earlier partials. ``ctc_log_probs`` (num_frames, V) are kept for the final's
        rescoring.
        """
        self.in_flight = False
        if self.closed:
            self._release(self)
            return None
        self._frames_done += num_frames
        if ctc_log_probs is not None:
            self._keep_ctc(ctc_log_probs)
        if beams is not None:
            self._hypotheses = relink(self._hypotheses, beams)
            self._hypothesis_scores = beams.scores
            self._show_hypothesis(beams.best)
        for token_id, frame in tokens or ():
            self._utterance.add(token_id, frame)
        results: list[Result] = []
        if window.is_final:
            results = self._finalise()
        elif self._endpointer.is_endpoint(self._frames_done, self._utterance.last_token_frame):
            results = self._finalise()
            self.needs_decoder_reset = True
        else:
            if self._utterance.empty:
                self._endpointer.skip_silence(self._frames_done)
            results = self._partial()
        update = None
        if results or window.is_final:
            update = Update(results, self._frames_done * self._frame_shift_ms)
            self._updates.put_nowait(update)
        if window.is_final:
            self._done = True
            self._updates.put_nowait(None)
        else:
            self._maybe_submit()
        return update

    def step_failed(self, error: BaseException) -> None:
        """The model step of this stream's window raised: end the stream with ``error``."""
        self.in_flight = False
        self._done = True
        if self.closed:
            self._release(self)
        else:
            self.fail(error)

    def _results(self, is_final: bool) -> list[Result]:
        return utterance_results(
            self._utterance,
            self.model.tokenizer,
            is_final=is_final,
            utterance_index=self._utterance_index,
            frame_shift_ms=self._frame_shift_ms,
            with_words=self.options.word_times,
            language_code=self.options.language_code,
        )

    def _show_hypothesis(self, index: int) -> None:
        """Make beam hypothesis ``index`` the current utterance."""
        self._utterance = self._new_utterance()
        for token_id, frame in self._hypotheses[index]:
            self._utterance.add(token_id, frame)

    def _keep_ctc(self, log_probs: torch.Tensor) -> None:
        if self._ctc_chunks is None or self._rescorer is None:
            return
        self._ctc_frames += log_probs.shape[0]
        if self._ctc_frames > MAX_CTC_FRAMES:
            # Bound the memory of a stream that never pauses; its final keeps the word LM's choice.
            self._ctc_chunks = None
            return
        self._ctc_chunks.append(log_probs)

    def _finalise(self) -> list[Result]:
        if self._hypotheses is not None and self._rescorer is not None:
            # Without a rescorer the current utterance already is the best search score's.
            ctc = torch.cat(self._ctc_chunks) if self._ctc_chunks else None
            self._show_hypothesis(
                final_hypothesis(
                    self._hypotheses,
                    self._hypothesis_scores,
                    self._rescorer,
                    self.model.tokenizer.decode,
                    ctc,
                    self.model.tokenizer.blank_id,
                )
            )
        self._ctc_chunks, self._ctc_frames = [], 0
        results = self._results(is_final=True)
        if results:
            self._utterance_index += 1
        self._utterance = self._new_utterance()
        self._hypotheses = None  # the model's beams restart with the decoder reset
        self._last_partial = ()
        self._endpointer.start_utterance(self._frames_done)
        return results

    def _partial(self) -> list[Result]:
        if not self.options.interim_results:
            return []
        # Send a partial only when the hypothesis changed (beam search may revise tokens, so
        # compare the tokens themselves, not only how many there are).
        tokens = sorted(self._utterance.tokens.items())
        signature = tuple((channel, tuple(t for t, _ in channel_tokens)) for channel, channel_tokens in tokens)
        if signature == self._last_partial:
            return []
        self._last_partial = signature
        return self._results(is_final=False)
