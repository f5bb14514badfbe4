"""t-SOT search: ``<cc>`` only for multi-talker streams, each channel its own LM history, mixed
batches equal each stream alone, finals rescored per channel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import NO_ENDPOINTS, random_token_lm
from random_model import save_random_model

from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams
from server.model.checkpoint import load_model
from server.model.transducer import StreamingTransducer
from server.search.beam import beam_search_frames
from server.search.hypotheses import init_beam_state
from server.search.ngram_lm import TokenNgramLM
from server.search.options import Search, SearchOptions, SearchResources
from server.search.rescoring import Rescorer, build_word_lm, final_scores, split_channels


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> StreamingTransducer:
    """A random t-SOT model that emits tokens, several per frame, and ``<cc>`` often."""
    model = load_model(save_random_model(tmp_path_factory.mktemp("tsot") / "random-tsot", multi_talker=True))
    assert model.tokenizer.cc_id is not None
    with torch.no_grad():
        model.joiner.output.bias[model.tokenizer.blank_id] = -3.0
        model.joiner.output.bias[model.tokenizer.cc_id] = 0.5
    return model


@pytest.fixture(scope="module")
def lm(model: StreamingTransducer) -> TokenNgramLM:
    return random_token_lm(model, lowest_token=3)  # no blank, <unk> or <cc> in the LM's sentences


def _searches(lm: TokenNgramLM) -> dict[str, Search]:
    return {
        "greedy": Search(),
        "beam": Search(SearchOptions(beam=4)),
        "beam+lm": Search(SearchOptions(beam=4, lm_weight=0.2, token_bonus=0.8), SearchResources(token_lm=lm)),
    }


def _options(multi_talker: bool) -> StreamOptions:
    return dataclasses.replace(NO_ENDPOINTS, multi_talker=multi_talker)


def _finals(model: StreamingTransducer, search: Search, features: list[np.ndarray], multi: list[bool]) -> list:
    """Per stream, its final results as (channel, tokens) pairs."""
    pieces = [[f[start : start + 19] for start in range(0, len(f), 19)] for f in features]
    options = [_options(m) for m in multi]
    results = decode_streams(model, search, pieces, options, join_at=[0, 2, 1, 3][: len(features)], features=True)
    return [[(r.channel, r.tokens) for u in updates for r in u.results if r.is_final] for updates in results]


@pytest.mark.parametrize("method", ["greedy", "beam", "beam+lm"])
def test_multi_talker_and_single_talker_streams_in_one_batch_get_what_they_get_alone(
    model: StreamingTransducer, lm: TokenNgramLM, method: str
) -> None:
    search = _searches(lm)[method]
    rng = np.random.default_rng(11)
    features = [rng.standard_normal((n, 80)).astype(np.float32) for n in (130, 95, 150, 80)]
    multi = [True, False, True, False]
    alone = [_finals(model, search, [f], [m])[0] for f, m in zip(features, multi, strict=True)]
    assert _finals(model, search, features, multi) == alone
    # Each multi-talker stream really has two channels here; a one-talker stream only channel 0.
    assert all({channel for channel, _ in alone[row]} == {0, 1} for row in (0, 2))
    assert all({channel for channel, _ in alone[row]} == {0} for row in (1, 3))


@pytest.mark.parametrize("method", ["greedy", "beam+lm"])
def test_a_single_talker_stream_never_emits_a_channel_change(
    model: StreamingTransducer, lm: TokenNgramLM, method: str
) -> None:
    """``<cc>`` is masked for it, so it searches as a one-talker model would: its tokens are not the
    multi-talker stream's tokens with ``<cc>`` dropped (which is what a dropped-afterwards rule gives)."""
    search = _searches(lm)[method]
    features = np.random.default_rng(5).standard_normal((160, 80)).astype(np.float32)
    single = _finals(model, search, [features], [False])[0]
    multi = _finals(model, search, [features], [True])[0]
    cc = model.tokenizer.cc_id
    assert single and all(token != cc for _, tokens in single for token, _ in tokens)
    merged_multi = sorted(pair for _, tokens in multi for pair in tokens)
    assert sorted(pair for _, tokens in single for pair in tokens) != merged_multi


def test_each_virtual_channel_keeps_its_own_lm_history(model: StreamingTransducer, lm: TokenNgramLM) -> None:
    """After a call from a fresh state, hypothesis k's tokens are its whole history: its LM context
    must be the last tokens of its current channel, and the other context those of the other channel."""
    search = _searches(lm)["beam+lm"]
    cc, blank = model.tokenizer.cc_id, model.tokenizer.blank_id
    assert cc is not None
    size = search.lm_context_size
    torch.manual_seed(2)
    encoder_out = torch.randn(2, 60, model.config.encoder.d_model)
    multi_talker = torch.tensor([True, False])
    state = init_beam_state(2, search.beam, model.config.decoder.context_size, size, blank, "cpu", multi_talker)
    allowed = torch.ones(2, model.config.tokenizer.vocab_size, dtype=torch.bool)
    allowed[:, cc] = multi_talker
    with torch.no_grad():
        state, trace = beam_search_frames(
            model, encoder_out, torch.tensor([60, 60]), state, search, torch.zeros(2, dtype=torch.int64), allowed
        )

    def last(tokens: list[int]) -> list[int]:
        return ([blank] * size + tokens)[-size:]

    switched = 0
    for row in range(2):
        for k in range(search.beam):
            tokens = trace.tokens[row, k, : int(trace.lengths[row, k])].tolist()
            channels = split_channels(tokens, cc) + [[]]
            current = tokens.count(cc) % 2
            switched += tokens.count(cc) > 0
            assert state.lm_context[row, k].tolist() == last(channels[current]), (row, k, tokens)
            assert state.other_lm_context[row, k].tolist() == last(channels[1 - current]), (row, k, tokens)
            if row == 1:
                assert cc not in tokens
    assert switched  # the multi-talker row did change channels


def test_finals_of_multi_talker_hypotheses_are_rescored_per_channel(model: StreamingTransducer) -> None:
    """The word LM scores each channel as its own sentence: the same two sentences serialized in
    either order, or interleaved, score the same, and a sentence is not the other's context."""
    cc = model.tokenizer.cc_id
    assert cc is not None
    first, second = "please call me back tomorrow morning", "how much does the blue one cost"
    word_lm = build_word_lm([first, second] * 10, order=3, min_count=1)
    rescorer = Rescorer(word_lm, weight=1.0)
    encode, decode = model.tokenizer.encode, model.tokenizer.decode

    def hypothesis(*segments: list[int]) -> list[tuple[int, int]]:
        tokens = [token for n, segment in enumerate(segments) for token in ([cc] if n else []) + segment]
        return [(token, frame) for frame, token in enumerate(tokens)]

    a, b = encode(first), encode(second)
    split_at = len(a) // 2
    hypotheses = [
        hypothesis(a, b),  # talker A, then B on channel 1
        hypothesis(a[:split_at], b, a[split_at:]),  # A's words around B's
        [(t, f) for f, t in enumerate(a + b)],  # both on one channel: one run-on sentence
    ]
    scores = final_scores(hypotheses, [0.0, 0.0, 0.0], rescorer, decode, cc_id=cc)
    alone = word_lm.sentence_scores([first, second]).log_probs.sum().item()
    assert scores[0] == pytest.approx(alone, abs=1e-4)
    assert scores[1] == pytest.approx(alone, abs=1e-4)
    assert scores[2] < alone - 1.0  # the joined sentence is far less likely than two sentences


def test_decode_speed_measures_multi_talker_streams(model: StreamingTransducer, tmp_path: Path) -> None:
    """benchmarks/decode_speed.py --multi-talker: the same audio through streams without and with
    multi_talker (what "a multi-talker stream costs what a one-talker stream costs" is measured by)."""
    import json

    import soundfile as sf

    from training.speed import real_time_factor

    audio = (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32)
    sf.write(str(tmp_path / "a.wav"), audio, 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "text": "x"}) + "\n")
    for path in ("step", "stream"):
        for multi_talker in (False, True):
            figures = real_time_factor(model, Search(), manifest, 1, 2, path, multi_talker)
            assert figures["multi_talker"] is multi_talker and figures["audio_seconds"] == pytest.approx(3.0)
            assert figures["compute_seconds"] > 0
