"""Endpointing rules: declarative data, evaluated by one pure function."""

from __future__ import annotations

from server.engine.endpoint import EndpointConfig, EndpointRule, UtteranceSpan, endpoint_rule, rule_fires

FRAME_MS = 40
RULES = EndpointConfig(trailing_silence_ms=200, max_utterance_ms=1000, silence_timeout_ms=2000).rules()


def _fired(start: int, first: int | None, last: int | None, done: int) -> str | None:
    rule = endpoint_rule(RULES, UtteranceSpan(start, first, last, done), FRAME_MS)
    return None if rule is None else rule.name


def test_trailing_silence_after_speech_ends_the_utterance() -> None:
    # 200 ms = 5 frames of blanks after the last token (frame 10): frames 11..15.
    assert _fired(0, 3, 10, 15) is None
    assert _fired(0, 3, 10, 16) == "trailing silence"


def test_maximum_length_cuts_ongoing_speech_counted_from_the_first_token() -> None:
    # 1000 ms = 25 frames from the first token (frame 10), the last token keeps coming.
    assert _fired(0, 10, 34, 35 - 1) is None
    assert _fired(0, 10, 34, 35) == "maximum length"


def test_silence_alone_ends_only_at_the_silence_timeout() -> None:
    # 2000 ms = 50 frames without any token since the utterance started (frame 7).
    assert _fired(7, None, None, 56) is None
    assert _fired(7, None, None, 57) == "silence timeout"


def test_a_silence_only_rule_never_fires_on_speech_and_durations_round_up() -> None:
    silence_only = EndpointRule("silence timeout", needs_speech=False, min_trailing_silence_ms=100)
    assert not rule_fires(silence_only, UtteranceSpan(0, 1, 1, 500), FRAME_MS)
    # 100 ms rounds up to 3 frames of 40 ms: never before the configured time.
    assert not rule_fires(silence_only, UtteranceSpan(0, None, None, 2), FRAME_MS)
    assert rule_fires(silence_only, UtteranceSpan(0, None, None, 3), FRAME_MS)


def test_a_rule_without_a_duration_never_fires() -> None:
    assert not rule_fires(EndpointRule("empty", needs_speech=None), UtteranceSpan(0, 1, 2, 100), FRAME_MS)
