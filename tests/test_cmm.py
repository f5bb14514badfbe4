"""Configurable multilingual model (CMM): per-stream language masks in one batch, vocabulary restriction."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import NO_ENDPOINTS
from random_model import save_random_model

from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams
from server.model.checkpoint import load_model
from server.model.transducer import StreamingTransducer
from server.search.options import Search, SearchOptions

LANGUAGES = ["en", "de", "fr"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> StreamingTransducer:
    """A random CMM model whose experts matter and whose tokens are split between the languages."""
    model_dir = save_random_model(
        tmp_path_factory.mktemp("cmm") / "random-cmm", languages=LANGUAGES, language_experts=True
    )
    model = load_model(model_dir)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        model.joiner.output.bias[model.tokenizer.blank_id] = -3.0  # emit tokens, several per frame
        assert model.encoder.experts is not None
        for experts in model.encoder.experts:
            experts.up.normal_(0.0, 0.3, generator=generator)
            experts.bias.normal_(0.0, 0.3, generator=generator)
        assert model.token_languages is not None
        vocab = model.tokenizer.vocab_size
        # Token t belongs to language t % 3, and every fifth token to all of them (shared pieces).
        table = torch.zeros(vocab, len(LANGUAGES), dtype=torch.bool)
        table[torch.arange(vocab), torch.arange(vocab) % len(LANGUAGES)] = True
        table[::5] = True
        model.token_languages.copy_(table)
    return model


def _mask(*codes: str) -> np.ndarray:
    return np.array([code in codes for code in LANGUAGES], np.float32)


def _options(*codes: str) -> StreamOptions:
    weights = _mask(*codes) if codes else None
    return dataclasses.replace(NO_ENDPOINTS, language_weights=weights)


def _final_tokens(model: StreamingTransducer, search: Search, features: list[np.ndarray], options: list) -> list:
    pieces = [[f[start : start + 23] for start in range(0, len(f), 23)] for f in features]
    results = decode_streams(model, search, pieces, options, join_at=[0, 1, 3, 2][: len(features)], features=True)
    return [[pair for u in updates for r in u.results if r.is_final for pair in r.tokens] for updates in results]


SEARCHES = {"greedy": Search(), "beam": Search(SearchOptions(beam=4))}


@pytest.mark.parametrize("method", sorted(SEARCHES))
def test_streams_with_different_language_masks_in_one_batch_get_what_they_get_alone(
    model: StreamingTransducer, method: str
) -> None:
    search = SEARCHES[method]
    rng = np.random.default_rng(2)
    features = [rng.standard_normal((n, 80)).astype(np.float32) for n in (120, 90, 140, 75)]
    options = [_options("de"), _options("en", "fr"), _options(), _options("fr")]
    alone = [_final_tokens(model, search, [f], [o])[0] for f, o in zip(features, options, strict=True)]
    assert _final_tokens(model, search, features, options) == alone
    assert all(alone)
    # The masks matter: the same audio under another mask decodes differently.
    other = _final_tokens(model, search, [features[0]], [_options("en")])[0]
    assert other != alone[0]


@pytest.mark.parametrize("method", sorted(SEARCHES))
def test_a_stream_restricted_to_german_never_emits_a_token_only_other_languages_use(
    model: StreamingTransducer, method: str
) -> None:
    search = SEARCHES[method]
    assert model.token_languages is not None
    german = LANGUAGES.index("de")
    rng = np.random.default_rng(3)
    features = [rng.standard_normal((200, 80)).astype(np.float32) for _ in range(3)]
    restricted = _final_tokens(model, search, features, [_options("de")] * 3)
    unrestricted = _final_tokens(model, search, features, [_options()] * 3)
    tokens = [token for stream in restricted for token, _ in stream]
    assert tokens and all(bool(model.token_languages[token, german]) for token in tokens)
    # Without the restriction the same audio does use other languages' tokens: the mask did the work.
    others = [token for stream in unrestricted for token, _ in stream if not model.token_languages[token, german]]
    assert others


def test_results_name_the_language_the_tokens_belong_to(model: StreamingTransducer) -> None:
    rng = np.random.default_rng(5)
    features = rng.standard_normal((150, 80)).astype(np.float32)
    pieces = [[features]]
    for code in LANGUAGES:
        (updates,) = decode_streams(model, Search(), pieces, [_options(code)], features=True)
        assert {r.language_code for u in updates for r in u.results} == {code}
    (updates,) = decode_streams(model, Search(), pieces, [_options("de", "fr")], features=True)
    finals = [r for u in updates for r in u.results if r.is_final]
    assert finals
    for result in finals:
        counts = model.token_languages[torch.tensor([t for t, _ in result.tokens])].sum(dim=0)
        expected = "de" if counts[1] >= counts[2] else "fr"
        assert result.language_code == expected


def test_experts_start_at_zero_so_a_new_cmm_model_is_its_universal_model(tmp_path: Path) -> None:
    model = load_model(save_random_model(tmp_path / "fresh", languages=LANGUAGES, language_experts=True))
    features = torch.randn(2, 60, 80)
    lengths = torch.tensor([60, 60])
    with torch.no_grad():
        german, _ = model.encode_utterances(features, lengths, True, torch.tensor([[0.0, 1.0, 0.0]] * 2))
        everything, _ = model.encode_utterances(features, lengths, True, None)
    torch.testing.assert_close(german, everything)
