"""Endpointing: when does the utterance in progress end? Declarative rules, one pure function.

As sherpa-onnx's endpoint rules, each rule is data, and an utterance ends when any rule's
conditions all hold. The rules a stream gets (``EndpointConfig.rules``):
- trailing silence: the utterance has tokens and the model has emitted only blanks for
  ``trailing_silence_ms`` since its last token;
- maximum length: the utterance has lasted ``max_utterance_ms`` since its first token (it
  is cut even in the middle of speech, so results stay bounded in size and latency);
- silence timeout: no token at all for ``silence_timeout_ms``; this ends an empty utterance,
  which sends nothing but restarts the search, so a silent stream holds no growing state.

Lengths are in encoder frames (``frame_ms`` each); a duration rounds up to whole frames, so
no rule fires before its configured time.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TRAILING_SILENCE_MS = 800
DEFAULT_MAX_UTTERANCE_MS = 20_000
DEFAULT_SILENCE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class EndpointRule:
    """Fires when all conditions hold. ``needs_speech``: True, the utterance must have tokens;
    False, it must have none; None, either."""

    name: str
    needs_speech: bool | None
    min_trailing_silence_ms: int = 0
    min_utterance_ms: int = 0


@dataclass(frozen=True)
class EndpointConfig:
    """A stream's endpointing settings (the request's, or the server's defaults)."""

    trailing_silence_ms: int = DEFAULT_TRAILING_SILENCE_MS
    max_utterance_ms: int = DEFAULT_MAX_UTTERANCE_MS
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS

    def rules(self) -> tuple[EndpointRule, ...]:
        return (
            EndpointRule("trailing silence", needs_speech=True, min_trailing_silence_ms=self.trailing_silence_ms),
            EndpointRule("maximum length", needs_speech=True, min_utterance_ms=self.max_utterance_ms),
            EndpointRule("silence timeout", needs_speech=False, min_trailing_silence_ms=self.silence_timeout_ms),
        )


@dataclass(frozen=True)
class UtteranceSpan:
    """Where the utterance in progress stands, in absolute encoder frames.

    start_frame: the first frame after the previous endpoint (0 for the first utterance).
    first_token_frame, last_token_frame: of its tokens, None while it has none.
    frames_done: frames the model has consumed so far.
    """

    start_frame: int
    first_token_frame: int | None
    last_token_frame: int | None
    frames_done: int


def _frames(ms: int, frame_ms: int) -> int:
    return max(1, -(-ms // frame_ms)) if ms > 0 else 0


def rule_fires(rule: EndpointRule, span: UtteranceSpan, frame_ms: int) -> bool:
    has_speech = span.last_token_frame is not None
    if rule.needs_speech is not None and rule.needs_speech != has_speech:
        return False
    silence_from = span.start_frame if span.last_token_frame is None else span.last_token_frame + 1
    speech_from = span.start_frame if span.first_token_frame is None else span.first_token_frame
    return (
        span.frames_done - silence_from >= _frames(rule.min_trailing_silence_ms, frame_ms)
        and span.frames_done - speech_from >= _frames(rule.min_utterance_ms, frame_ms)
        # A rule with no condition but speech would fire at once: it needs a duration.
        and (rule.min_trailing_silence_ms > 0 or rule.min_utterance_ms > 0)
    )


def endpoint_rule(rules: tuple[EndpointRule, ...], span: UtteranceSpan, frame_ms: int) -> EndpointRule | None:
    """The first rule that ends the utterance of ``span``, or None (it goes on)."""
    return next((rule for rule in rules if rule_fires(rule, span, frame_ms)), None)
