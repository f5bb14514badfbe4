"""Beam search: chunk-by-chunk equals one piece, batching changes nothing, LM fusion is wired in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import noisy_model, round_robin_steps, windows_of

from server.model.transducer import StreamingTransducer
from server.search.beam import (
    SearchConfig,
    _merge_duplicates,
    beam_search_frames,
    beam_updates,
    init_beam_state,
    relink,
)
from server.search.ngram_lm import TokenNgramLM, build_ngram_lm


@pytest.fixture(scope="module")
def model(random_model_dir: Path) -> StreamingTransducer:
    return noisy_model(random_model_dir)


@pytest.fixture(scope="module")
def lm(model: StreamingTransducer) -> TokenNgramLM:
    rng = np.random.default_rng(3)
    vocab = model.tokenizer.vocab_size
    sentences = [rng.integers(1, vocab, size=rng.integers(3, 12)).tolist() for _ in range(300)]
    return build_ngram_lm(sentences, vocab, order=3)


def _search(lm: TokenNgramLM) -> SearchConfig:
    return SearchConfig(beam=4, lm=lm, lm_weight=0.5, token_bonus=0.5)


def _decode_alone(model: StreamingTransducer, features: np.ndarray, search: SearchConfig) -> list[tuple[int, int]]:
    state = model.init_state(1, search=search)
    hypotheses: list[list[tuple[int, int]]] = [[] for _ in range(search.beam)]
    best = 0
    for window, real in windows_of(model, features):
        out = model.step(torch.from_numpy(window)[None], torch.tensor([real]), state, search)
        (update,) = beam_updates(out.trace, out.state.beam_scores)
        hypotheses = relink(hypotheses, update)
        state, best = out.state, update.best
    return hypotheses[best]


def test_streamed_beam_search_equals_whole_utterance(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    search = _search(lm)
    rng = np.random.default_rng(0)
    for num_frames in (9, 64, 157):
        features = rng.standard_normal((num_frames, 80)).astype(np.float32)
        streamed = _decode_alone(model, features, search)
        with torch.no_grad():
            whole = model.transcribe_batch(torch.from_numpy(features)[None], torch.tensor([num_frames]), search=search)[
                0
            ]
        assert streamed == whole
        assert len(streamed) > 0
        frames = [frame for _, frame in streamed]
        assert frames == sorted(frames) and len(set(frames)) == len(frames)  # one token per frame at most


def test_batched_beam_streams_at_different_positions_equal_alone(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    search = _search(lm)
    rng = np.random.default_rng(1)
    utterances = [rng.standard_normal((n, 80)).astype(np.float32) for n in (157, 60, 111, 23)]
    expected = [_decode_alone(model, u, search) for u in utterances]
    hypotheses = [[[] for _ in range(search.beam)] for _ in utterances]
    best = [0] * len(utterances)
    for rows, out in round_robin_steps(model, utterances, start_at=[0, 2, 3, 5], search=search):
        for row, update in zip(rows, beam_updates(out.trace, out.state.beam_scores), strict=True):
            hypotheses[row] = relink(hypotheses[row], update)
            best[row] = update.best
    assert [h[b] for h, b in zip(hypotheses, best, strict=True)] == expected


def test_beam_of_one_is_greedy_search_with_one_symbol_per_frame(model: StreamingTransducer) -> None:
    one_symbol = StreamingTransducer(model.config.model_copy(update={"max_symbols_per_frame": 1}), model.tokenizer)
    one_symbol.load_state_dict(model.state_dict())
    one_symbol.eval()
    encoder_out = torch.randn(3, 40, model.config.encoder.d_model)
    lengths = torch.tensor([40, 25, 7])
    with torch.no_grad():
        context = torch.zeros(3, model.config.decoder.context_size, dtype=torch.int64)
        greedy, _ = one_symbol.greedy_decode(encoder_out, lengths, context)
        beam_of_one = SearchConfig(beam=1)
        state = init_beam_state(3, beam_of_one, model.config.decoder.context_size, model.tokenizer.blank_id)
        state, trace = beam_search_frames(one_symbol, encoder_out, lengths, state, beam_of_one)
    assert [update.added[0] for update in beam_updates(trace, state.scores)] == greedy
    assert sum(map(len, greedy)) > 0


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

    def share_of_fives(search: SearchConfig) -> float:
        with torch.no_grad():
            state = init_beam_state(2, search, model.config.decoder.context_size, model.tokenizer.blank_id)
            state, trace = beam_search_frames(model, encoder_out, lengths, state, search)
        tokens = [t for update in beam_updates(trace, state.scores) for t, _ in update.added[update.best]]
        return sum(t == 5 for t in tokens) / max(len(tokens), 1)

    plain = SearchConfig(beam=4)
    fused = dataclasses.replace(plain, lm=fives, lm_weight=3.0, token_bonus=3.0)
    assert share_of_fives(fused) > 0.8 > share_of_fives(plain) + 0.3


def test_state_made_for_another_search_is_refused(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    """A beam state without LM context cannot silently run a search that fuses an LM."""
    state = init_beam_state(1, SearchConfig(beam=4), model.config.decoder.context_size, model.tokenizer.blank_id)
    with pytest.raises(ValueError, match="make the state with the same SearchConfig"):
        beam_search_frames(
            model, torch.randn(1, 3, model.config.encoder.d_model), torch.tensor([3]), state, _search(lm)
        )
