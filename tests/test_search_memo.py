"""The search memos return exactly what they memoise, follow weight changes, and survive collisions."""

from __future__ import annotations

import pytest
import torch

from server.model.transducer import StreamingTransducer
from server.search.memo import FusionMemo, PredictionMemo, context_index, fusion_memo, prediction_memo
from server.search.ngram_lm import TokenNgramLM
from server.search.options import Search, SearchOptions, SearchResources


def _contexts(model: StreamingTransducer, rows: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.tokenizer.vocab_size, (rows, width), generator=generator)


def test_context_index_is_the_base_v_number() -> None:
    context = torch.tensor([[0, 0], [0, 5], [2, 3]])
    assert context_index(context, 10).tolist() == [0, 5, 23]


def test_prediction_memo_equals_the_network(model: StreamingTransducer) -> None:
    memo = PredictionMemo(model)
    assert memo.enabled
    width = model.config.decoder.context_size
    with torch.inference_mode():
        for seed in range(3):  # later calls mix filled and new rows
            context = _contexts(model, 50, width, seed)
            torch.testing.assert_close(memo.lookup(context), memo.compute(context), rtol=1e-5, atol=1e-6)


def test_prediction_memo_follows_weight_changes_and_modes(model: StreamingTransducer) -> None:
    memo = PredictionMemo(model)
    context = _contexts(model, 20, model.config.decoder.context_size, 7)
    with torch.inference_mode():
        before = memo.lookup(context)
    bias = model.joiner.decoder_proj.bias
    with torch.no_grad():
        bias.add_(1.0)  # what an optimizer step does: in place
    try:
        after = memo.lookup(context)  # outside inference mode now: a table made inside must not be written
        torch.testing.assert_close(after, before + 1.0, rtol=1e-5, atol=1e-5)
    finally:
        with torch.no_grad():
            bias.sub_(1.0)


def test_prediction_memo_is_one_per_model(model: StreamingTransducer) -> None:
    assert prediction_memo(model) is prediction_memo(model)


@pytest.mark.parametrize("slots", [4, 1 << 10])
def test_fusion_memo_equals_the_lm_terms(model: StreamingTransducer, lm: TokenNgramLM, slots: int) -> None:
    blank = model.tokenizer.blank_id
    memo = FusionMemo(lm, 0.5, 1.5, model.config.tokenizer.vocab_size, (blank,), slots=slots)
    with torch.inference_mode():
        for seed in range(4):  # 4 slots: nearly every context collides with another
            context = _contexts(model, 40, lm.context_size, seed)
            context = torch.cat([context, context[:5]])  # repeats inside one call
            terms = memo.lookup(context)
            expected = 0.5 * lm.log_probs(context) + 1.5
            expected[:, blank] = 0.0
            torch.testing.assert_close(terms, expected)


def test_fusion_memo_without_an_lm_is_the_bonus(model: StreamingTransducer) -> None:
    search = Search(SearchOptions(beam=4, token_bonus=2.0))
    memo = fusion_memo(search, model)
    terms = memo.lookup(torch.zeros(3, 0, dtype=torch.int64))
    assert terms.shape == (3, model.config.tokenizer.vocab_size)
    assert terms[:, model.tokenizer.blank_id].eq(0).all()
    assert terms[:, 1:].eq(2.0).all()


def test_fusion_memo_is_per_search(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    search = Search(SearchOptions(beam=4, lm_weight=0.3, token_bonus=1.0), SearchResources(token_lm=lm))
    assert fusion_memo(search, model) is fusion_memo(search, model)
    other = search.with_options(lm_weight=0.6)
    assert fusion_memo(other, model) is not fusion_memo(search, model)
    assert fusion_memo(other, model).lm_weight == 0.6


def test_fusion_memo_slots_must_be_a_power_of_two(lm: TokenNgramLM) -> None:
    with pytest.raises(ValueError, match="power of two"):
        FusionMemo(lm, 0.5, 1.0, 16, (0,), slots=6)
