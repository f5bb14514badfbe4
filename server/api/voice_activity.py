"""Voice activity events and timeouts of one stream, from the model's own results.

Speech begins where an utterance's first token is (the start of its first result) and ends where
its final result ends: the recognizer's tokens are the voice activity detector, at no extra cost
per stream (decision 0019 and docs/benchmarks.md measure how close to the true edges it is).
``speech_start_timeout`` and ``speech_end_timeout`` are checked after each model step of the
stream, in audio time (so a stream sent faster than real time times out at the same point of its
audio), allowing for the transducer's lag in emitting a word it has heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from asr_client.api.asr.v1 import asr_pb2

from server.api.convert import update_to_proto
from server.api.validation import StreamingOptions
from server.engine.decoder import Update

# How long after the model has heard a word its first token can come out (the transducer's lag;
# measured up to about 0.5 s here).
TOKEN_LAG_MS = 500
# The first token comes a little after the voice starts, and the final's last token a little
# before it stops: the events are moved by the mean offsets measured on generated (dev) text with
# the bundled model (benchmarks/voice_activity.py --sentences dev: begin +34 ms, end -86 ms late).
BEGIN_LEAD_MS = 40
END_LAG_MS = 80


@dataclass
class VoiceActivity:
    """Tracks speech in a stream's updates and says which events to send.

    Timeouts (ms, None: none): no speech ``start_timeout_ms`` into the stream, or none for
    ``end_timeout_ms`` after speech ended.
    """

    start_timeout_ms: int | None = None
    end_timeout_ms: int | None = None
    in_speech: bool = False
    speech_seen: bool = False
    last_end_ms: int = 0
    _begun: set[int] = field(default_factory=set)

    def events(self, update: Update) -> list[tuple[asr_pb2.SpeechEventType, int]]:
        """(event, time in ms) for the speech edges this update shows, in order."""
        found: list[tuple[asr_pb2.SpeechEventType, int]] = []
        for result in update.results:
            if not result.transcript:
                continue
            if not self.in_speech and result.utterance_index not in self._begun:
                self._begun.add(result.utterance_index)
                self.in_speech = self.speech_seen = True
                found.append((asr_pb2.SPEECH_ACTIVITY_BEGIN, max(0, result.start_ms - BEGIN_LEAD_MS)))
            if result.is_final and self.in_speech:
                self.in_speech = False
                self.last_end_ms = result.end_ms + END_LAG_MS
                found.append((asr_pb2.SPEECH_ACTIVITY_END, self.last_end_ms))
        return found

    def timed_out(self, processed_ms: float) -> bool:
        """Whether a timeout has passed, with ``processed_ms`` of audio through the model so far."""
        heard = processed_ms - TOKEN_LAG_MS  # audio whose tokens must be out by now
        if self.in_speech:
            return False
        if not self.speech_seen:
            return self.start_timeout_ms is not None and heard >= self.start_timeout_ms
        return self.end_timeout_ms is not None and heard - self.last_end_ms >= self.end_timeout_ms


def event_response(event: asr_pb2.SpeechEventType, at_ms: int) -> asr_pb2.StreamingRecognizeResponse:
    response = asr_pb2.StreamingRecognizeResponse(speech_event_type=event)
    response.speech_event_time.FromMilliseconds(at_ms)
    return response


class StreamResponses:
    """A stream's updates as the client asked for them: partials only if it asked for interim
    results (the decoder makes them for voice activity too), voice activity events around the
    results, and the end of a single-utterance stream after its first final."""

    def __init__(self, options: StreamingOptions) -> None:
        self.options = options
        self.voice = (
            VoiceActivity(options.speech_start_timeout_ms, options.speech_end_timeout_ms)
            if options.tracks_voice
            else None
        )
        self.done = False  # single utterance: the stream is over
        self.timed_out_at_ms: int | None = None  # when a voice activity timeout passed

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
        events = [] if self.voice is None else self.voice.events(update)
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
        """After the stream's last update: the timeout event, if one ended it."""
        if self.timed_out_at_ms is None:
            return []
        return [event_response(asr_pb2.SPEECH_ACTIVITY_TIMEOUT, self.timed_out_at_ms)]
