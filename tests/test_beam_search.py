"""Beam search: chunk-by-chunk equals one piece, batching changes nothing, LM fusion is wired in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import check_batched_equals_alone, check_streamed_equals_whole

from server.model.transducer import StreamingTransducer
from server.search.beam import _merge_duplicates, beam_search_frames
from server.search.greedy import greedy_search_frames
from server.search.hypotheses import beam_updates, init_beam_state
from server.search.ngram_lm import TokenNgramLM, build_ngram_lm
from server.search.options import Search, SearchOptions, SearchResources


def _search(lm: TokenNgramLM) -> Search:
    return Search(SearchOptions(beam=4, lm_weight=0.5, token_bonus=0.5), SearchResources(token_lm=lm))


def _beams(model: StreamingTransducer, batch: int, search: Search):
    context = model.config.decoder.context_size
    return init_beam_state(batch, search.beam, context, search.lm_context_size, model.tokenizer.blank_id)


def _run(model: StreamingTransducer, search: Search, encoder_out: torch.Tensor, lengths: torch.Tensor, kernel):
    start = torch.zeros(encoder_out.shape[0], dtype=torch.int64)
    with torch.no_grad():
        state, trace = kernel(model, encoder_out, lengths, _beams(model, encoder_out.shape[0], search), start)
    return beam_updates(trace, state.scores)


def test_streamed_beam_search_equals_whole_utterance(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    for streamed in check_streamed_equals_whole(model, _search(lm)):
        frames = [frame for _, frame in streamed]
        assert frames == sorted(frames) and len(set(frames)) == len(frames)  # one token per frame at most


def test_batched_beam_streams_at_different_positions_equal_alone(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    check_batched_equals_alone(model, _search(lm))


def test_beam_of_one_is_greedy_search_with_one_symbol_per_frame(model: StreamingTransducer) -> None:
    one_symbol = StreamingTransducer(model.config.model_copy(update={"max_symbols_per_frame": 1}), model.tokenizer)
    one_symbol.load_state_dict(model.state_dict())
    one_symbol.eval()
    encoder_out = torch.randn(3, 40, model.config.encoder.d_model)
    lengths = torch.tensor([40, 25, 7])
    beam_of_one = Search(SearchOptions(beam=1))
    greedy = _run(one_symbol, beam_of_one, encoder_out, lengths, greedy_search_frames)

    def beam_kernel(*args):
        return beam_search_frames(*args[:4], beam_of_one, args[4])

    beam = _run(one_symbol, beam_of_one, encoder_out, lengths, beam_kernel)
    assert [u.added for u in beam] == [u.added for u in greedy]
    assert sum(len(u.added[0]) for u in greedy) > 0


def test_equal_hypotheses_are_merged_by_log_adding_their_scores() -> None:
    scores = torch.tensor([[-1.0, -1.5, -2.0, float("-inf")]])
    hashes = torch.tensor([[7, 9, 7, 7]])
    merged = _merge_duplicates(scores, hashes)
    assert merged[0, 0].item() == pytest.approx(np.logaddexp(-1.0, -2.0))
    assert merged[0, 1].item() == -1.5
    assert merged[0, 2].item() == float("-inf") and merged[0, 3].item() == float("-inf")


def test_lm_fusion_pulls_the_search_towards_the_lm(model: StreamingTransducer) -> None:
    """An LM that has only ever seen token 5 repeated makes a strongly fused search emit 5s."""
    vocab = model.tokenizer.vocab_size
    fives = build_ngram_lm([[5] * 10] * 50, vocab, order=3)
    encoder_out = torch.randn(2, 30, model.config.encoder.d_model)
    lengths = torch.tensor([30, 30])

    def share_of_fives(search: Search) -> float:
        def kernel(*args):
            return beam_search_frames(*args[:4], search, args[4])

        updates = _run(model, search, encoder_out, lengths, kernel)
        tokens = [t for update in updates for t, _ in update.added[update.best]]
        return sum(t == 5 for t in tokens) / max(len(tokens), 1)

    plain = Search(SearchOptions(beam=4), SearchResources(token_lm=fives))
    fused = Search(SearchOptions(beam=4, lm_weight=3.0, token_bonus=3.0), SearchResources(token_lm=fives))
    assert share_of_fives(fused) > 0.8 > share_of_fives(plain) + 0.3


def test_state_made_for_another_search_is_refused(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    """A beam state without LM context cannot silently run a search that fuses an LM."""
    state = _beams(model, 1, Search(SearchOptions(beam=4)))
    with pytest.raises(ValueError, match="make the state with the same Search"):
        beam_search_frames(
            model,
            torch.randn(1, 3, model.config.encoder.d_model),
            torch.tensor([3]),
            state,
            _search(lm),
            torch.zeros(1, dtype=torch.int64),
        )
