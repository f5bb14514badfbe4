"""``Tokenizer.words`` (word by word, memoised) reads any id sequence as ``decode(ids).split()``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.model.tokenizer import Tokenizer

TOKENIZERS = {
    "en-small": Tokenizer(DEFAULT_MODEL_DIR / "tokenizer.model"),
    "en-small-tsot": Tokenizer(DEFAULT_MODEL_DIR.parent / "en-small-tsot" / "tokenizer.model", "<cc>"),
}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_words_equal_the_split_decoded_text(name: str, data: st.DataObject) -> None:
    tokenizer = TOKENIZERS[name]
    ids = data.draw(st.lists(st.integers(0, tokenizer.vocab_size - 1), max_size=60))
    assert tokenizer.words(ids) == tokenizer.decode(ids).split()


def test_decoding_is_memoised_and_still_exact() -> None:
    tokenizer = TOKENIZERS["en-small"]
    ids = tokenizer.encode("the cat sat on the mat")
    first = tokenizer.decode(ids)
    assert tokenizer.decode(list(ids)) == first == "the cat sat on the mat"
    assert tokenizer.words(ids) == ["the", "cat", "sat", "on", "the", "mat"]
    assert [tokenizer.starts_word(i) for i in ids] == [tokenizer.id_to_piece(i).startswith("\u2581") for i in ids]
