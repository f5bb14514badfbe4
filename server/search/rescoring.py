"""Second pass over a final result: rescore the beam's K hypotheses with a word n-gram LM.

The token LM fused into the beam search sees 3 BPE pieces of history, about one word, so
it cannot tell ``croaded`` from ``crowded`` or ``after`` from ``after four`` at the end of
a sentence. A word LM can: it knows which words exist (unknown words pay ``oov_penalty``),
two words of context, and where sentences end. Running it on whole hypotheses once per
final result costs one batched LM query, against one per frame for fusion; partial
results keep the search's own best hypothesis (they may be revised anyway).

When the model has a CTC head (an output layer on the encoder, trained beside the transducer
loss), ``ctc_weight`` adds each hypothesis' CTC log-likelihood over the utterance's encoder
frames: a second acoustic opinion that scores whole token sequences, with no search of its
own, and so no bias toward what the transducer's pruning kept (decision 0015).

The word LM reuses ``TokenNgramLM`` (interpolated Kneser-Ney as tensors) over word ids:
0 is the sentence start (its context padding), 1 the sentence end, 2 an unknown word,
then the vocabulary, which is stored in the file's metadata.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from server.search.context_graph import ContextGraph
from server.search.ctc_scores import ctc_sequence_log_probs
from server.search.hypotheses import best_index
from server.search.ngram_lm import TokenNgramLM, build_ngram_lm

WORD_LM_FILE = "word_lm.safetensors"
SENTENCE_START, SENTENCE_END, UNKNOWN_WORD = 0, 1, 2
_FIRST_WORD_ID = 3
_T = TypeVar("_T")
# The LM file stores ids as int16.
MAX_WORDS = 32_000


@dataclass(frozen=True)
class SentenceScores:
    """Per text (N,) float32: word-LM log-probability, number of words, number of unknown words."""

    log_probs: Tensor
    word_counts: Tensor
    unknown_counts: Tensor


@dataclass(frozen=True)
class WordLM:
    """A word n-gram LM: ``ngram`` over word ids, ``words`` maps each known word to its id."""

    ngram: TokenNgramLM
    words: dict[str, int]

    def word_ids(self, text: str) -> list[int]:
        return [self.words.get(word, UNKNOWN_WORD) for word in text.split()]

    def sentence_scores(self, texts: Sequence[str]) -> SentenceScores:
        """What rescoring needs of each text: its LM log-probability (one batched query), its
        word count and its unknown-word count. Independent of the rescoring weights."""
        history = self.ngram.context_size
        contexts: list[list[int]] = []
        targets: list[int] = []
        owners: list[int] = []
        word_counts: list[int] = []
        unknown_counts: list[int] = []
        for index, text in enumerate(texts):
            ids = self.word_ids(text)
            word_counts.append(len(ids))
            unknown_counts.append(ids.count(UNKNOWN_WORD))
            sequence = [SENTENCE_START] * history + ids + [SENTENCE_END]
            for position in range(history, len(sequence)):
                contexts.append(sequence[position - history : position])
                targets.append(sequence[position])
                owners.append(index)
        picked = self.ngram.log_prob_of(
            torch.tensor(contexts, dtype=torch.int64).reshape(len(contexts), history),
            torch.tensor(targets, dtype=torch.int64),
        )
        log_probs = torch.zeros(len(texts)).index_add_(0, torch.tensor(owners, dtype=torch.int64), picked)
        return SentenceScores(
            log_probs, torch.tensor(word_counts, dtype=torch.float32), torch.tensor(unknown_counts, dtype=torch.float32)
        )

    def save(self, path: Path | str, info: dict | None = None) -> None:
        vocabulary = sorted(self.words, key=self.words.__getitem__)
        self.ngram.save(path, metadata={**(self.ngram.info if info is None else info), "words": vocabulary})

    @classmethod
    def load(cls, path: Path | str) -> WordLM:
        """Raises ``FileNotFoundError`` or ``ValueError`` (naming the file) on a bad file."""
        ngram = TokenNgramLM.load(path)
        vocabulary = ngram.info.pop("words", None)
        if not isinstance(vocabulary, list) or len(vocabulary) + _FIRST_WORD_ID != ngram.vocab_size:
            expected = ngram.vocab_size - _FIRST_WORD_ID
            raise ValueError(f"{path}: not a word LM (its metadata lacks a vocabulary of {expected} words)")
        return cls(ngram, {word: index for index, word in enumerate(vocabulary, _FIRST_WORD_ID)})


def build_word_lm(sentences: Sequence[str], order: int = 3, max_words: int = MAX_WORDS, min_count: int = 2) -> WordLM:
    """Kneser-Ney word LM of normalized sentences; words seen fewer than ``min_count`` times,
    or beyond the ``max_words`` most frequent, are the unknown word (so it has a probability)."""
    if not 1 <= max_words <= MAX_WORDS:
        raise ValueError(f"max_words must be 1..{MAX_WORDS}")
    counts = collections.Counter(word for sentence in sentences for word in sentence.split())
    kept = [word for word, count in counts.most_common(max_words) if count >= min_count]
    words = {word: index for index, word in enumerate(kept, _FIRST_WORD_ID)}
    sequences = [[words.get(w, UNKNOWN_WORD) for w in sentence.split()] + [SENTENCE_END] for sentence in sentences]
    ngram = build_ngram_lm(sequences, len(words) + _FIRST_WORD_ID, order=order, pad_id=SENTENCE_START)
    return WordLM(ngram, words)


@dataclass(frozen=True)
class Rescorer:
    """Final score = search score + ``weight`` · log P_word(sentence) + ``word_bonus`` per word
    − ``oov_penalty`` per word the LM does not know + ``ctc_weight`` · log P_ctc(tokens | audio)."""

    lm: WordLM
    weight: float
    word_bonus: float = 0.0
    oov_penalty: float = 0.0
    ctc_weight: float = 0.0

    @property
    def uses_ctc(self) -> bool:
        return self.ctc_weight > 0.0

    def scores(
        self, search_scores: Sequence[float], sentences: SentenceScores, ctc_scores: Tensor | None = None
    ) -> Tensor:
        """(K,) final scores of K hypotheses; -inf stays -inf (an unused beam slot).

        ``ctc_scores`` (K,) from ``ctc_sequence_log_probs``; the CTC term is left out when
        they are missing or none is finite (no acoustic frames to judge by).
        """
        total = (
            torch.tensor(search_scores, dtype=torch.float32)
            + self.weight * sentences.log_probs
            + self.word_bonus * sentences.word_counts
            - self.oov_penalty * sentences.unknown_counts
        )
        if self.uses_ctc and ctc_scores is not None and bool(torch.isfinite(ctc_scores).any()):
            total = total + self.ctc_weight * ctc_scores
        return total

    def best(self, search_scores: Sequence[float], sentences: SentenceScores, ctc_scores: Tensor | None = None) -> int:
        """Index of the hypothesis to finalise."""
        return int(self.scores(search_scores, sentences, ctc_scores).argmax())

    def describe(self) -> dict:
        return {
            "word_lm_order": self.lm.ngram.order,
            "word_lm_words": len(self.lm.words),
            "weight": self.weight,
            "word_bonus": self.word_bonus,
            "oov_penalty": self.oov_penalty,
            "ctc_weight": self.ctc_weight,
        }


def final_scores(
    hypotheses: Sequence[Sequence[tuple[int, int]]],
    search_scores: Sequence[float],
    rescorer: Rescorer | None,
    decode: Callable[[list[int]], str],
    ctc_log_probs: Tensor | None = None,
    blank_id: int = 0,
    context_graph: ContextGraph | None = None,
    cc_id: int | None = None,
) -> list[float]:
    """The K scores a stream's final is chosen by (-inf: an unused beam slot).

    Without a ``rescorer``, the search scores; with one, the word LM's and (when the rescorer
    has a ``ctc_weight`` and ``ctc_log_probs`` (T, V) of the utterance's frames are given) the
    CTC head's terms added. ``decode`` turns token ids into text (the model's tokenizer). With a
    ``context_graph`` (phrase boosting), the bonus each hypothesis still has on loan for an
    unfinished phrase is taken back first. The N-best list and its confidences are ranked by
    these too, so they agree with the final. ``cc_id``: a t-SOT model's channel change; the word
    LM then scores each virtual channel's words as a sentence of its own (the CTC head scores the
    serialized sequence, ``<cc>`` included, as it was trained to).
    """
    if context_graph is None and rescorer is None:
        return list(search_scores)
    token_lists = [[token for token, _ in hypothesis] for hypothesis in hypotheses]
    if context_graph is not None:
        search_scores = [s - context_graph.potential_of(t) for s, t in zip(search_scores, token_lists, strict=True)]
    if rescorer is None:
        return list(search_scores)
    if cc_id is not None and any(cc_id in tokens for tokens in token_lists):
        sentences = _channel_sentence_scores(rescorer.lm, token_lists, decode, cc_id)
    else:
        texts = [decode(tokens) for tokens in token_lists]
        sentences = rescorer.lm.sentence_scores(texts)
        if context_graph is not None and context_graph.words:
            sentences = _known_phrase_words(sentences, texts, rescorer.lm, context_graph.words)
    ctc_scores = None
    if rescorer.uses_ctc and ctc_log_probs is not None and ctc_log_probs.shape[0] > 0:
        ctc_scores = ctc_sequence_log_probs(ctc_log_probs, token_lists, blank_id)
    return rescorer.scores(search_scores, sentences, ctc_scores).tolist()


def split_channels(sequence: Sequence[_T], cc: _T) -> list[list[_T]]:
    """A serialized t-SOT sequence -> each virtual channel's items (the engine's rule: items go to the
    current channel, ``cc`` toggles between two); a second channel only when a ``cc`` occurs."""
    channels: list[list[_T]] = [[]]
    current = 0
    for item in sequence:
        if item == cc:
            current = 1 - current
            if len(channels) == 1:
                channels.append([])
        else:
            channels[current].append(item)
    return channels


def _channel_sentence_scores(
    lm: WordLM, token_lists: Sequence[Sequence[int]], decode: Callable[[list[int]], str], cc_id: int
) -> SentenceScores:
    """Each hypothesis' word-LM terms summed over its virtual channels, each channel one sentence
    (one batched query for all): a talker's words are not the other's context."""
    texts: list[str] = []
    owners: list[int] = []
    for index, tokens in enumerate(token_lists):
        for channel in split_channels(tokens, cc_id):
            texts.append(decode(channel))
            owners.append(index)
    per_channel = lm.sentence_scores(texts)
    owner_index = torch.tensor(owners, dtype=torch.int64)

    def summed(values: Tensor) -> Tensor:
        return torch.zeros(len(token_lists)).index_add_(0, owner_index, values)

    return SentenceScores(
        summed(per_channel.log_probs), summed(per_channel.word_counts), summed(per_channel.unknown_counts)
    )


def _known_phrase_words(
    sentences: SentenceScores, texts: list[str], lm: WordLM, words: frozenset[str]
) -> SentenceScores:
    """The request's phrases name words that exist (names, products): the unknown-word penalty
    spares them, or it would undo the boosting of exactly the words the word LM lacks."""
    spared = [sum(1 for word in text.split() if word in words and word not in lm.words) for text in texts]
    unknown = sentences.unknown_counts - torch.tensor(spared, dtype=torch.float32)
    return dataclasses.replace(sentences, unknown_counts=unknown)


def final_hypothesis(
    hypotheses: Sequence[Sequence[tuple[int, int]]],
    search_scores: Sequence[float],
    rescorer: Rescorer | None,
    decode: Callable[[list[int]], str],
    ctc_log_probs: Tensor | None = None,
    blank_id: int = 0,
    context_graph: ContextGraph | None = None,
) -> int:
    """Which of a stream's K hypotheses ((token, frame) lists) becomes its final result: the
    best of ``final_scores`` (the first of equals).

    The server's sessions, whole-utterance decoding and the tests all choose here, so they
    cannot disagree.
    """
    scores = final_scores(hypotheses, search_scores, rescorer, decode, ctc_log_probs, blank_id, context_graph)
    return best_index(scores)
