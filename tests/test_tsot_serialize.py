"""t-SOT serialization: order by emission time, <cc> at talker changes, round trip through the engine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.engine.transcript import Utterance
from training.tsot.serialize import deserialize, merge_order, serialize, talker_channels

CC = 2  # the bundled tokenizer's <cc> id; any id the talkers do not use would do


def test_serialize_by_time_with_cc() -> None:
    tokens = [[10, 11, 12], [20, 21]]
    times = [[0.0, 1.0, 4.0], [0.5, 3.0]]
    assert serialize(tokens, times, CC) == [10, CC, 20, CC, 11, CC, 21, CC, 12]


def test_one_talker_has_no_cc() -> None:
    assert serialize([[5, 6, 7]], [[0.1, 0.2, 0.3]], CC) == [5, 6, 7]
    assert serialize([[5, 6], []], [[0.1, 0.2], []], CC) == [5, 6]


def test_ties_are_stable() -> None:
    # Equal times: talker 0 first; a talker's own equal times keep their order.
    assert serialize([["a", "b"], ["x", "y"]], [[1.0, 1.0], [1.0, 1.0]], "<cc>") == ["a", "b", "<cc>", "x", "y"]


def test_later_first_talker_takes_channel_1() -> None:
    times = [[2.0, 3.0], [0.0, 2.5]]
    assert talker_channels(times) == [1, 0]
    channels = deserialize(serialize([["a", "b"], ["x", "y"]], times, "<cc>"), "<cc>")
    assert channels == [["x", "y"], ["a", "b"]]


def test_rejects_three_talkers_and_decreasing_times() -> None:
    with pytest.raises(ValueError, match="at most 2"):
        merge_order([[0.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match="must not decrease"):
        merge_order([[1.0, 0.5]])


def _engine_channels(serialized: list[int], frames: list[int], multi_talker: bool = True) -> dict[int, list[int]]:
    """The engine's own deserialization (``Utterance.of``) of a serialized hypothesis."""
    utterance = Utterance.of(list(zip(serialized, frames, strict=True)), CC, multi_talker)
    return {channel: [token for token, _ in pairs] for channel, pairs in utterance.tokens.items()}


def test_round_trip_through_the_engine() -> None:
    tokens = [[10, 11, 12, 13], [20, 21, 22]]
    frames = [[1, 4, 9, 12], [3, 5, 10]]
    serialized = serialize(tokens, frames, CC)
    order = merge_order(frames)
    # The engine sees (token, frame); a <cc> takes the frame of the token it precedes.
    token_frames = iter(frames[t][p] for t, p in order)
    serial_frames = []
    pending = next(token_frames)
    for token in serialized:
        serial_frames.append(pending)
        if token != CC:
            pending = next(token_frames, pending)
    channels = _engine_channels(serialized, serial_frames)
    assert channels == {0: tokens[0], 1: tokens[1]}
    # multi_talker off: everything on channel 0, <cc> dropped, in time order.
    assert _engine_channels(serialized, serial_frames, multi_talker=False) == {0: [10, 20, 11, 21, 12, 22, 13]}


@st.composite
def two_talkers(draw: st.DrawFn) -> tuple[list[list[int]], list[list[float]]]:
    tokens, times = [], []
    for _ in range(2):
        count = draw(st.integers(min_value=0, max_value=15))
        tokens.append(draw(st.lists(st.integers(min_value=3, max_value=255), min_size=count, max_size=count)))
        frames = draw(st.lists(st.integers(min_value=0, max_value=40), min_size=count, max_size=count))
        times.append([float(f) for f in sorted(frames)])
    return tokens, times


@settings(max_examples=300, deadline=None)
@given(two_talkers())
def test_properties(talkers: tuple[list[list[int]], list[list[float]]]) -> None:
    tokens, times = talkers
    serialized = serialize(tokens, times, CC)
    order = merge_order(times)
    merged_times = [times[t][p] for t, p in order]
    # Every token once, by non-decreasing time; one <cc> per change of talker, never two in a row,
    # never at either end.
    assert merged_times == sorted(merged_times)
    changes = sum(a[0] != b[0] for a, b in zip(order, order[1:], strict=False))
    assert serialized.count(CC) == changes
    assert len(serialized) == len(tokens[0]) + len(tokens[1]) + changes
    assert all(not (a == CC and b == CC) for a, b in zip(serialized, serialized[1:], strict=False))
    assert not serialized or (serialized[0] != CC and serialized[-1] != CC)
    # The inverse: each talker's tokens back, in order, on its virtual channel, by both the
    # module's deserializer and the engine's.
    channels = deserialize(serialized, CC)
    engine = _engine_channels(serialized, [0] * len(serialized))
    for talker, channel in enumerate(talker_channels(times)):
        assert channels[channel] == tokens[talker]
        assert engine.get(channel, []) == tokens[talker]
