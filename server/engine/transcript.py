"""Tokens of one utterance -> text and timed words, per virtual channel (t-SOT).

A t-SOT model serialises the tokens of overlapping speakers into one sequence and emits
the channel-change token ``<cc>`` whenever the next token belongs to the other virtual
channel. Deserialising is a two-state machine: tokens go to the current channel, ``<cc>``
toggles it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

NUM_VIRTUAL_CHANNELS = 2


class TokenizerLike(Protocol):
    """What the engine needs of ``server.model.tokenizer.Tokenizer``."""

    blank_id: int
    cc_id: int | None

    def decode(self, ids: list[int]) -> str: ...

    def words(self, ids: list[int]) -> list[str]: ...

    def starts_word(self, token_id: int) -> bool: ...


@dataclass(frozen=True)
class Word:
    """A word with its start and end time in milliseconds from the start of the stream."""

    text: str
    start_ms: int
    end_ms: int
    # In (0, 1] when word confidence was asked for (finals), else 0.
    confidence: float = 0.0


@dataclass(frozen=True)
class Alternative:
    """A final's second, third, ... best distinct transcript of one channel (N-best)."""

    transcript: str
    words: tuple[Word, ...]
    confidence: float
    tokens: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Result:
    """One channel's hypothesis of one utterance (partial or final)."""

    transcript: str
    words: tuple[Word, ...]
    is_final: bool
    utterance_index: int
    start_ms: int
    end_ms: int
    channel: int = 0
    language_code: str = ""
    # The (token_id, frame) pairs the result was made from (not sent to clients).
    tokens: tuple[tuple[int, int], ...] = ()
    # Finals: the posterior probability of the transcript, in (0, 1]; partials: 0.
    confidence: float = 0.0
    # Partials: how likely the transcript is to stay (a word prefix of the final), 0 to 1; finals: 0.
    stability: float = 0.0
    # Finals with max_alternatives > 1: the next best distinct transcripts, best first.
    alternatives: tuple[Alternative, ...] = ()


@dataclass
class Utterance:
    """Tokens of the utterance in progress, split into virtual channels.

    ``multi_talker`` False keeps everything on channel 0 and drops ``<cc>`` tokens (a t-SOT
    model serving a request that did not ask for speaker separation).
    """

    cc_id: int | None
    multi_talker: bool
    channel: int = 0
    tokens: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    first_token_frame: int | None = None
    last_token_frame: int | None = None

    @classmethod
    def of(cls, hypothesis: list[tuple[int, int]], cc_id: int | None, multi_talker: bool) -> Utterance:
        """The utterance of a search hypothesis ((token_id, frame) pairs), deserialised."""
        utterance = cls(cc_id=cc_id, multi_talker=multi_talker)
        for token_id, frame in hypothesis:
            utterance.add(token_id, frame)
        return utterance

    def add(self, token_id: int, frame: int) -> None:
        if token_id == self.cc_id:
            if self.multi_talker:
                self.channel = (self.channel + 1) % NUM_VIRTUAL_CHANNELS
            return
        self.tokens.setdefault(self.channel, []).append((token_id, frame))
        if self.first_token_frame is None:
            self.first_token_frame = frame
        self.last_token_frame = frame

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens.values())

    @property
    def empty(self) -> bool:
        return self.last_token_frame is None


def words_of(tokens: list[tuple[int, int]], tokenizer: TokenizerLike, frame_shift_ms: int) -> tuple[Word, ...]:
    """Group (token, frame) pairs into words: a piece starting with "▁" opens a new word.

    A word spans from its first token's frame to the end of its last token's frame.
    """
    groups: list[list[tuple[int, int]]] = []
    for token_id, frame in tokens:
        if not groups or tokenizer.starts_word(token_id):
            groups.append([])
        groups[-1].append((token_id, frame))
    words = []
    for group in groups:
        text = tokenizer.decode([t for t, _ in group]).strip()
        if text:
            words.append(Word(text, group[0][1] * frame_shift_ms, (group[-1][1] + 1) * frame_shift_ms))
    return tuple(words)


def utterance_results(
    utterance: Utterance,
    tokenizer: TokenizerLike,
    *,
    is_final: bool,
    utterance_index: int,
    frame_shift_ms: int,
    with_words: bool,
    language_code: str,
) -> list[Result]:
    """One ``Result`` per virtual channel that has tokens, in channel order."""
    results = []
    for channel in sorted(utterance.tokens):
        tokens = utterance.tokens[channel]
        if not tokens:
            continue
        words = words_of(tokens, tokenizer, frame_shift_ms)
        results.append(
            Result(
                transcript=tokenizer.decode([t for t, _ in tokens]).strip(),
                words=words if with_words else (),
                is_final=is_final,
                utterance_index=utterance_index,
                start_ms=tokens[0][1] * frame_shift_ms,
                end_ms=(tokens[-1][1] + 1) * frame_shift_ms,
                channel=channel,
                language_code=language_code,
                tokens=tuple(tokens),
            )
        )
    return results
