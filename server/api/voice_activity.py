"""Voice activity events and timeouts of one stream, from Silero VAD over its audio.

The stream's audio goes through ``server.api.speech_detector`` as it is decoded (before the model),
and the edges it finds are sent with the first update whose audio covers them, so an event never
runs ahead of the results around it. Decision 0025 says why Silero rather than the recognizer's own
tokens (measured: benchmarks/voice_activity.py). ``speech_start_timeout`` and ``speech_end_timeout``
are checked after each model step of the stream, in audio time (so a stream sent faster than real
time times out at the same point of its audio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from asr_client.api.asr.v1 import asr_pb2

from server.api.convert import update_to_proto
from server.api.speech_detector import DetectorState, SpeechDetector, SpeechEdge, shared_detector
from server.api.validation import StreamingOptions
from server.engine.decoder import Update


@dataclass
class VoiceActivity:
    """A stream's speech edges as found in its audio, and which to send by now.

    Timeouts (ms, None: none): no speech ``start_timeout_ms`` into the stream, or none for
    ``end_timeout_ms`` after speech ended.
    """

    detector: SpeechDetector
    start_timeout_ms: int | None = None
    end_timeout_ms: int | None = None
    state: DetectorState = field(default_factory=DetectorState)
    found: list[SpeechEdge] = field(default_factory=list)  # found, not yet sent
    in_speech: bool = False  # as the sent events say
    speech_seen: bool = False
    last_end_ms: int = 0

    def hear(self, samples: np.ndarray) -> None:
        """The stream's next (n,) float32 samples at 16 kHz."""
        self.state, edges = self.detector.accept(self.state, samples)
        self.found += edges

    def end_of_audio(self) -> None:
        self.found += self.detector.finish(self.state)
        self.state = DetectorState(windows=self.state.windows)

    def events(self, processed_ms: int | None) -> list[tuple[asr_pb2.SpeechEventType, int]]:
        """(event, time in ms) of the edges up to ``processed_ms`` of audio (None: all), in order."""
        due = [edge for edge in self.found if processed_ms is None or edge.at_ms <= processed_ms]
        self.found = self.found[len(due) :]
        for edge in due:
            self.in_speech = edge.begins
            self.speech_seen = True
            if not edge.begins:
                self.last_end_ms = edge.at_ms
        return [
            (asr_pb2.SPEECH_ACTIVITY_BEGIN if edge.begins else asr_pb2.SPEECH_ACTIVITY_END, edge.at_ms) for edge in due
        ]

    def timed_out(self, processed_ms: float) -> bool:
        """Whether a timeout has passed, with ``processed_ms`` of audio through the model so far."""
        if self.in_speech or any(edge.begins for edge in self.found):
            return False
        if not self.speech_seen:
            return self.start_timeout_ms is not None and processed_ms >= self.start_timeout_ms
        return self.end_timeout_ms is not None and processed_ms - self.last_end_ms >= self.end_timeout_ms


def event_response(event: asr_pb2.SpeechEventType, at_ms: int) -> asr_pb2.StreamingRecognizeResponse:
    response = asr_pb2.StreamingRecognizeResponse(speech_event_type=event)
    response.speech_event_time.FromMilliseconds(at_ms)
    return response


class StreamResponses:
    """A stream's updates as the client asked for them: partials only if it asked for interim
    results, voice activity events around the
    results, and the end of a single-utterance stream after its first final."""

    def __init__(self, options: StreamingOptions) -> None:
        self.options = options
        self.voice = (
            VoiceActivity(shared_detector(), options.speech_start_timeout_ms, options.speech_end_timeout_ms)
            if options.tracks_voice
            else None
        )
        self.done = False  # single utterance: the stream is over
        self.timed_out_at_ms: int | None = None  # when a voice activity timeout passed

    def hear(self, samples: np.ndarray) -> None:
        """The stream's decoded audio, as it goes to the model."""
        if self.voice is not None:
            self.voice.hear(samples)

    def end_of_audio(self) -> None:
        if self.voice is not None:
            self.voice.end_of_audio()

    def timeout_listener(self, end_audio: Callable[[], None]) -> Callable[[int], None] | None:
        """A ``StreamSession.step_listener`` that calls ``end_audio`` (soon, not inside the step)
        once a voice activity timeout passes; None without timeouts."""
        voice = self.voice
        if voice is None or (voice.start_timeout_ms is None and voice.end_timeout_ms is None):
            return None

        def after_step(processed_ms: int) -> None:
            if self.timed_out_at_ms is None and voice.timed_out(processed_ms):
                self.timed_out_at_ms = processed_ms
                asyncio.get_running_loop().call_soon(end_audio)

        return after_step

    def of(self, update: Update) -> list[asr_pb2.StreamingRecognizeResponse]:
        """The responses for one update, in order."""
        events = [] if self.voice is None else self.voice.events(update.audio_processed_ms)
        before = [event_response(e, ms) for e, ms in events if e == asr_pb2.SPEECH_ACTIVITY_BEGIN]
        after = [event_response(e, ms) for e, ms in events if e != asr_pb2.SPEECH_ACTIVITY_BEGIN]
        send_events = self.options.voice_activity_events
        results = update.results if self.options.interim_results else [r for r in update.results if r.is_final]
        responses = before if send_events else []
        if results or not update.results:
            responses.append(update_to_proto(Update(results, update.audio_processed_ms)))
        responses += after if send_events else []
        if self.options.single_utterance and any(r.is_final and r.transcript for r in update.results):
            self.done = True
            responses.append(event_response(asr_pb2.END_OF_SINGLE_UTTERANCE, update.audio_processed_ms))
        return responses

    def closing(self) -> list[asr_pb2.StreamingRecognizeResponse]:
        """After the stream's last update: the events not sent yet, and the timeout event if one
        ended the stream."""
        events = [] if self.voice is None or not self.options.voice_activity_events else self.voice.events(None)
        responses = [event_response(event, ms) for event, ms in events]
        if self.timed_out_at_ms is not None:
            responses.append(event_response(asr_pb2.SPEECH_ACTIVITY_TIMEOUT, self.timed_out_at_ms))
        return responses
