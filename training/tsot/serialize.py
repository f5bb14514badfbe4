"""t-SOT serialization (Kanda et al., Interspeech 2022): two talkers' tokens in one sequence.

The tokens of both talkers are merged in order of their emission times, and the channel-change
token ``<cc>`` is inserted wherever the next token belongs to the other talker. With at most two
concurrent talkers, two virtual channels suffice, and deserialization is the two-state machine of
``server.engine.transcript.Utterance``: tokens go to the current channel, ``<cc>`` toggles it. So
virtual channel 0 is the talker whose first token comes first, channel 1 the other.

Generic over the token type: ids (the round trip through the engine) or pieces (manifests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from server.search.rescoring import split_channels

T = TypeVar("T")

NUM_TALKERS = 2


def _check_times(times: Sequence[float], talker: int) -> None:
    if any(later < earlier for earlier, later in zip(times, times[1:], strict=False)):
        raise ValueError(f"talker {talker}: emission times must not decrease")


def merge_order(times: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """(talker, position) of every token in serialized order.

    ``times[k]`` are talker k's emission times (non-decreasing). Tokens are sorted by time; equal
    times keep talker 0's token first and each talker's own order, so the order is a function of
    the times alone (stable). Each talker's tokens stay in their order, whatever the times.
    """
    if len(times) > NUM_TALKERS:
        raise ValueError(f"t-SOT serializes at most {NUM_TALKERS} concurrent talkers, not {len(times)}")
    for talker, talker_times in enumerate(times):
        _check_times(talker_times, talker)
    keyed = [(time, talker, position) for talker, ts in enumerate(times) for position, time in enumerate(ts)]
    keyed.sort()
    return [(talker, position) for _, talker, position in keyed]


def serialize(tokens: Sequence[Sequence[T]], times: Sequence[Sequence[float]], cc: T) -> list[T]:
    """One sequence of both talkers' tokens, by emission time, ``cc`` at every change of talker.

    tokens[k], times[k]: talker k's tokens and their emission times (same length). A single
    talker (or one with no tokens) gives its tokens unchanged, with no ``cc``.
    """
    if len(tokens) != len(times) or any(len(a) != len(b) for a, b in zip(tokens, times, strict=True)):
        raise ValueError("each talker needs one emission time per token")
    serialized: list[T] = []
    current: int | None = None
    for talker, position in merge_order(times):
        if current is not None and talker != current:
            serialized.append(cc)
        current = talker
        serialized.append(tokens[talker][position])
    return serialized


def first_talker(times: Sequence[Sequence[float]]) -> int | None:
    """Which talker virtual channel 0 will hold: the one whose first token is serialized first."""
    order = merge_order(times)
    return order[0][0] if order else None


def deserialize(sequence: Sequence[T], cc: T) -> list[list[T]]:
    """Virtual channels of a serialized sequence: ``[channel 0 tokens, channel 1 tokens]``.

    The engine's rule (``server.search.rescoring.split_channels``: tokens to the current channel,
    ``cc`` toggles between the two), always two channels.
    """
    channels = split_channels(sequence, cc)
    return channels + [[] for _ in range(NUM_TALKERS - len(channels))]


def talker_channels(times: Sequence[Sequence[float]]) -> list[int]:
    """The virtual channel of each talker after serialization (talkers with no tokens: channel 1 or 0 left over)."""
    first = first_talker(times)
    if first is None:
        return list(range(len(times)))
    return [0 if talker == first else 1 for talker in range(len(times))]
