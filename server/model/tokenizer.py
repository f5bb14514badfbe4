"""SentencePiece tokenizer with a reserved blank (id 0) and optional special symbols.

The blank is SentencePiece's pad piece ``<blk>`` at id 0, so the transducer output layer and
the tokenizer share one id space; ``<cc>`` (t-SOT channel change) is a user-defined symbol
that a multi-talker model's tokenizer reserves.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

BLANK_PIECE = "<blk>"
CHANNEL_CHANGE_PIECE = "<cc>"
WORD_BOUNDARY = "\u2581"  # SentencePiece's "▁", marks a piece that starts a word


class Tokenizer:
    """Text <-> token ids."""

    def __init__(self, model_file: Path, channel_change_token: str | None = None) -> None:
        self.model_file = Path(model_file)
        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.blank_id = 0
        if self._sp.id_to_piece(self.blank_id) != BLANK_PIECE:
            raise ValueError(f"{model_file}: id 0 must be the blank piece {BLANK_PIECE!r}")
        self.cc_id: int | None = None
        if channel_change_token is not None:
            cc = self._sp.piece_to_id(channel_change_token)
            if cc == self._sp.unk_id():
                raise ValueError(f"{model_file}: no piece {channel_change_token!r}")
            self.cc_id = cc
        # Per-id facts read for every partial result, looked up once; decoded texts memoised
        # (a stream's partials decode the same words again and again).
        self._starts_word = [self._sp.id_to_piece(i).startswith(WORD_BOUNDARY) for i in range(self.vocab_size)]
        self._decode_memo = functools.lru_cache(maxsize=1 << 16)(self._decode)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        """The id text the model cannot write (a character outside its vocabulary) encodes to."""
        return self._sp.unk_id()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids (blank and <cc> dropped), words one space apart.

        A lone word-boundary piece ("▁") decodes to a space of its own; collapsing keeps the
        transcript equal to its words joined by single spaces.
        """
        return self._decode_memo(tuple(ids))

    def _decode(self, ids: tuple[int, ...]) -> str:
        text = self._sp.decode([i for i in ids if i != self.blank_id and i != self.cc_id])
        return " ".join(text.split())

    def words(self, ids: Iterable[int]) -> list[str]:
        """``decode(ids).split()``, decoded word by word (each word's pieces are memoised): the
        pieces of a word read the same wherever the word stands."""
        words: list[str] = []
        group: list[int] = []
        for token_id in ids:
            if token_id == self.blank_id or token_id == self.cc_id:
                continue
            if group and self._starts_word[token_id]:
                words.extend(self.decode(group).split())
                group = []
            group.append(token_id)
        if group:
            words.extend(self.decode(group).split())
        return words

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(token_id)

    def pieces_to_ids(self, pieces: Iterable[str]) -> list[int]:
        """Ids of pieces written out already (a t-SOT target with ``<cc>``); raises ValueError
        naming a piece this vocabulary lacks, rather than training on unknown tokens."""
        ids = []
        for piece in pieces:
            token_id = self._sp.piece_to_id(piece)
            if token_id == self._sp.unk_id() and piece != self._sp.id_to_piece(token_id):
                raise ValueError(f"{self.model_file}: no piece {piece!r}")
            ids.append(token_id)
        return ids

    def starts_word(self, token_id: int) -> bool:
        """Whether the piece begins a new word (SentencePiece's "▁" prefix)."""
        return self._starts_word[token_id]


def train_tokenizer(
    sentences: Iterable[str], model_prefix: Path, vocab_size: int, special_symbols: list[str] | None = None
) -> Path:
    """Train a unigram SentencePiece model on normalized sentences; returns the .model path."""
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_prefix=str(model_prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        pad_piece=BLANK_PIECE,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        user_defined_symbols=special_symbols or [],
        minloglevel=2,
    )
    return Path(f"{model_prefix}.model")
