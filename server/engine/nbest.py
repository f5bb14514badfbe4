"""What a stream's K hypotheses say beyond the best one: N-best alternatives, confidences, stability.

A final's K hypotheses, ranked by their final scores (``BeamHistory.ranked``), become a
distribution over hypotheses (``search.confidence.posteriors``). Per result channel:

- the distinct transcripts, in the ranked order of their best hypothesis (the first is the
  final itself), each with the summed probability of the hypotheses that read so: its
  confidence;
- a word's confidence: the probability of the hypotheses that hold the same word at an
  overlapping time (a confusion network's word posterior, without building the network).

A partial's stability is the probability, over the live beam's search scores, of the
hypotheses whose transcript starts with the partial's words (decision 0020). Greedy search
has one hypothesis: everything is 1 there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from server.engine.transcript import Alternative, Result, TokenizerLike, Utterance, Word, words_of
from server.search.confidence import FINAL_SCALE, PARTIAL_SCALE, bounded, posteriors
from server.search.hypotheses import Hypothesis

# A scored hypothesis: its (token, frame) pairs and its (final or search) score.
Scored = tuple[Hypothesis, float]


@dataclass(frozen=True)
class _Reading:
    """One hypothesis as one channel reads: its tokens, text, words and probability."""

    tokens: list[tuple[int, int]]
    text: str
    words: tuple[Word, ...]
    probability: float


@dataclass(frozen=True)
class NbestOptions:
    """What a request asked of its finals beyond the best transcript."""

    max_alternatives: int = 1
    word_confidence: bool = False
    word_times: bool = False


def _channels(hypothesis: Hypothesis, cc_id: int | None, multi_talker: bool) -> dict[int, list[tuple[int, int]]]:
    """A hypothesis' tokens per virtual channel (``Utterance.of``; without multi-talker all on channel 0,
    with no state machine to run: this runs for each of K hypotheses per partial)."""
    if not multi_talker:
        return {0: [pair for pair in hypothesis if pair[0] != cc_id]}
    return Utterance.of(hypothesis, cc_id, multi_talker).tokens


def _readings(
    channel: int,
    utterances: list[dict[int, list[tuple[int, int]]]],
    probabilities: list[float],
    tokenizer: TokenizerLike,
    frame_shift_ms: int,
    with_words: bool,
) -> list[_Reading]:
    readings = []
    for utterance, probability in zip(utterances, probabilities, strict=True):
        tokens = utterance.get(channel, [])
        text = tokenizer.decode([t for t, _ in tokens]).strip()
        words = words_of(tokens, tokenizer, frame_shift_ms) if with_words else ()
        readings.append(_Reading(tokens, text, words, probability))
    return readings


def _word_confidences(words: tuple[Word, ...], readings: list[_Reading]) -> tuple[Word, ...]:
    """Each word's posterior: the probability of the readings holding it at an overlapping time."""
    confident = []
    for word in words:
        support = sum(
            reading.probability
            for reading in readings
            if any(w.text == word.text and w.start_ms < word.end_ms and word.start_ms < w.end_ms for w in reading.words)
        )
        confident.append(dataclasses.replace(word, confidence=bounded(support)))
    return tuple(confident)


def final_results(
    results: list[Result],
    ranked: list[Scored],
    tokenizer: TokenizerLike,
    options: NbestOptions,
    *,
    frame_shift_ms: int,
    multi_talker: bool,
    scale: float = FINAL_SCALE,
) -> list[Result]:
    """The final's results (one per channel, made from ``ranked[0]``) with their confidence,
    word confidences and up to ``max_alternatives - 1`` alternatives; ``scale`` of the softmax
    over the final scores (``benchmarks/confidence.py --fit`` tries others)."""
    if not results:
        return results
    probabilities = posteriors([score for _, score in ranked], scale)
    utterances = [_channels(hypothesis, tokenizer.cc_id, multi_talker) for hypothesis, _ in ranked]
    need_words = options.word_confidence and options.word_times
    completed = []
    for result in results:
        readings = _readings(
            result.channel, utterances, probabilities, tokenizer, frame_shift_ms, with_words=need_words
        )
        groups: dict[str, list[_Reading]] = {}  # text -> its readings, in ranked order
        for reading in readings:
            groups.setdefault(reading.text, []).append(reading)
        distinct = [(text, group) for text, group in groups.items() if text]
        confidence = {text: bounded(sum(r.probability for r in group)) for text, group in distinct}
        words = result.words
        if need_words:
            words = _word_confidences(words, readings)
        alternatives = []
        for text, group in distinct[1 : options.max_alternatives]:
            best = group[0]
            alternative_words: tuple[Word, ...] = ()
            if options.word_times:
                alternative_words = best.words or words_of(best.tokens, tokenizer, frame_shift_ms)
                if need_words:
                    alternative_words = _word_confidences(alternative_words, readings)
            alternatives.append(Alternative(text, alternative_words, confidence[text], tuple(best.tokens)))
        completed.append(
            dataclasses.replace(
                result,
                words=words,
                confidence=confidence.get(result.transcript, bounded(readings[0].probability)),
                alternatives=tuple(alternatives),
            )
        )
    return completed


def partial_stability(
    results: list[Result],
    live: list[Scored],
    tokenizer: TokenizerLike,
    multi_talker: bool,
    scale: float = PARTIAL_SCALE,
) -> list[Result]:
    """The partial's results with their stability: the probability of the live hypotheses whose
    channel transcript starts with the partial's words (softmax of the search scores at ``scale``)."""
    if not results:
        return results
    probabilities = posteriors([score for _, score in live], scale)
    utterances = [_channels(hypothesis, tokenizer.cc_id, multi_talker) for hypothesis, _ in live]
    stable = []
    for result in results:
        words = result.transcript.split()
        partial = [t for t, _ in result.tokens]
        agreeing = 0.0
        for utterance, probability in zip(utterances, probabilities, strict=True):
            tokens = [t for t, _ in utterance.get(result.channel, [])]
            if _starts_with_words(tokens, partial, words, tokenizer):
                agreeing += probability
        stable.append(dataclasses.replace(result, stability=min(1.0, agreeing)))
    return stable


def _starts_with_words(tokens: list[int], partial: list[int], words: list[str], tokenizer: TokenizerLike) -> bool:
    """Whether ``tokens`` read as text starting with ``words`` (the partial's, of tokens ``partial``).

    Most of the beam extends the partial's own tokens: then the words agree when the next token
    opens a word, which needs no decoding (this runs per partial); otherwise only the words from
    the last word start both share are read.
    """
    extends = tokens[: len(partial)] == partial
    if extends and (len(tokens) == len(partial) or not partial or tokenizer.starts_word(tokens[len(partial)])):
        return True
    # The two agree up to their first different token, so up to the last word start before it
    # their words agree too (words(x + y) = words(x) + words(y) when y opens a word): only the
    # rest of each is read.
    common = min(len(tokens), len(partial))
    start = next((i for i in range(common) if tokens[i] != partial[i]), common)

    def opens_word(i: int) -> bool:  # both sequences have a word boundary before position i
        in_partial = i == len(partial) or tokenizer.starts_word(partial[i])
        in_tokens = i == len(tokens) or tokenizer.starts_word(tokens[i])
        return i == 0 or (in_partial and in_tokens)

    if not opens_word(start):
        start -= 1
        while start > 0 and not tokenizer.starts_word(partial[start]):
            start -= 1
    rest = tokenizer.words(partial[start:])
    shared = len(words) - len(rest)  # the partial's words before ``start``, which ``tokens`` has too
    if shared < 0:  # ``words`` are not the partial's tokens read as words: compare it all
        return tokenizer.words(tokens)[: len(words)] == words
    return tokenizer.words(tokens[start:])[: len(rest)] == words[shared:]
