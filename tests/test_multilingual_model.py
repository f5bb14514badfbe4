"""The pieces of a new CMM model: token-language table, language subsets, FFN pruning, CMM training steps."""

from __future__ import annotations

import random
from argparse import Namespace
from pathlib import Path

import torch

from server.model.tokenizer import Tokenizer, train_tokenizer
from training.batching import Batch
from training.fit import _extend_token_languages, _freeze
from training.multilingual_model import (
    _pruned_ffn,
    balanced_texts,
    build_multilingual_model,
    model_languages,
    sample_language_weights,
    token_language_table,
)
from training.objective import transducer_loss

TEXTS = {
    "en": ["please call me back tomorrow", "the train leaves at nine", "where is the station"] * 30,
    "de": ["bitte rufen sie mich morgen an", "der zug fährt um neun", "wo ist der bahnhof"] * 30,
    "fr": ["rappelez moi demain s'il vous plaît", "le train part à neuf heures", "où est la gare"] * 30,
}


def _corpus() -> tuple[list[str], list[str]]:
    texts = [text for language in TEXTS for text in TEXTS[language]]
    languages = [language for language in TEXTS for _ in TEXTS[language]]
    return texts, languages


def test_the_token_table_marks_each_token_with_the_languages_that_use_it(tmp_path: Path) -> None:
    texts, languages = _corpus()
    tokenizer = Tokenizer(train_tokenizer(texts, tmp_path / "tok", 50))
    order = model_languages(languages)
    assert order == ["en", "de", "fr"]
    table = token_language_table(tokenizer, texts, languages, order)
    assert table.shape == (tokenizer.vocab_size, 3) and bool(table[tokenizer.blank_id].all())
    for text, language in zip(texts, languages, strict=True):
        assert bool(table[tokenizer.encode(text), order.index(language)].all())
    german_only = [t for t in tokenizer.encode("bahnhof") if not table[t, 0] and not table[t, 2]]
    assert german_only, "a word only German uses has pieces only German has"


def test_language_subsets_always_hold_the_true_language() -> None:
    rng = random.Random(0)
    order = ["en", "de", "fr", "es", "it"]
    languages = [rng.choice(order) for _ in range(2000)]
    weights = sample_language_weights(languages, order, rng, other_prob=0.25, all_prob=0.2)
    own = torch.tensor([order.index(code) for code in languages])
    assert bool(weights[torch.arange(len(languages)), own].eq(1).all())
    everything = weights.sum(dim=1).eq(5).float().mean().item()
    alone = weights.sum(dim=1).eq(1).float().mean().item()
    assert 0.17 < everything < 0.24 and 0.21 < alone < 0.3  # all five: 0.2 + chance; alone: 0.8 * 0.75^4 = 0.25


def test_balanced_texts_take_an_equal_share_of_each_language() -> None:
    texts = ["a"] * 100 + ["b"] * 10
    chosen = balanced_texts(texts, ["en"] * 100 + ["de"] * 10, per_language=20)
    assert chosen.count("a") == 20 and chosen.count("b") == 10


def test_ffn_pruning_keeps_the_most_important_hidden_units() -> None:
    fc1 = torch.randn(8, 4)
    fc2 = torch.randn(4, 8)
    fc1[[2, 5]] *= 100  # two hidden units that matter far more
    tensors = {
        "layers.0.ffn.fc1.weight": fc1,
        "layers.0.ffn.fc1.bias": torch.arange(8.0),
        "layers.0.ffn.fc2.weight": fc2,
    }
    pruned = _pruned_ffn(tensors, 2)
    torch.testing.assert_close(pruned["layers.0.ffn.fc1.weight"], fc1[[2, 5]])
    torch.testing.assert_close(pruned["layers.0.ffn.fc1.bias"], torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(pruned["layers.0.ffn.fc2.weight"], fc2[:, [2, 5]])


def test_a_new_cmm_model_learns_under_sampled_language_masks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    texts, languages = _corpus()
    args = Namespace(
        seed=0, vocab_size=60, name="cmm-test", whisper_encoder=None, d_model=32, num_layers=2, num_heads=2,
        ffn_dim=64, chunk_size=4, left_chunks=2, right_context=1,
    )  # fmt: skip
    model = build_multilingual_model(args, texts, languages, tmp_path).train()
    assert model.config.languages == ["en", "de", "fr"] and model.encoder.experts is not None
    picked = [0, 30, 95, 150, 200]
    tokens = [model.tokenizer.encode(texts[i]) for i in picked]
    targets = torch.zeros(len(picked), max(map(len, tokens)), dtype=torch.int64)
    for row, ids in enumerate(tokens):
        targets[row, : len(ids)] = torch.tensor(ids)
    weights = sample_language_weights([languages[i] for i in picked], model.config.languages, random.Random(1))
    batch = Batch(
        torch.randn(len(picked), 150, 80),
        torch.tensor([150, 140, 130, 120, 110]),
        targets,
        torch.tensor([len(t) for t in tokens]),
        [texts[i] for i in picked],
        [languages[i] for i in picked],
        weights,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mask = (4, 2, 1)
    losses = []
    for _ in range(25):
        loss = transducer_loss(model, batch, mask).total
        assert torch.isfinite(loss), "the output restriction never masks a target"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert model.encoder.experts[0].up.abs().sum() > 0, "the language experts train"


def test_a_continued_model_gives_new_texts_tokens_to_their_languages(tmp_path: Path) -> None:
    """fit --init-from / --resume on new data: a token the table did not give to a language yet, but
    that language's new texts use, is added (else the output restriction would mask a target)."""
    texts, languages = _corpus()
    args = Namespace(
        seed=0, vocab_size=60, name="cmm-test", whisper_encoder=None, d_model=32, num_layers=2, num_heads=2,
        ffn_dim=64, chunk_size=4, left_chunks=2, right_context=1,
    )  # fmt: skip
    model = build_multilingual_model(args, texts, languages, tmp_path)
    assert model.token_languages is not None and model.config.languages == ["en", "de", "fr"]
    english_before = model.token_languages[:, 0].clone()
    model.token_languages[:, 1] = False  # as if no German text had been seen when the table was made
    german = [text for text, language in zip(texts, languages, strict=True) if language == "de"]
    _extend_token_languages(model, german + ["hello"], ["de"] * len(german) + ["xx"])  # xx: not a model language
    for text in german:
        assert bool(model.token_languages[model.tokenizer.encode(text), 1].all())
    assert torch.equal(model.token_languages[:, 0], english_before), "nothing is taken away"


def test_frozen_blocks_are_frozen_and_run_without_dropout(tmp_path: Path) -> None:
    """fit --freeze-encoder-layers N: no gradient below block N, and no dropout there either (a
    pretrained encoder's frozen blocks give the same output in training as served)."""
    texts, languages = _corpus()
    args = Namespace(
        seed=0, vocab_size=60, name="cmm-test", whisper_encoder=None, d_model=32, num_layers=3, num_heads=2,
        ffn_dim=64, chunk_size=4, left_chunks=2, right_context=1,
    )  # fmt: skip
    model = build_multilingual_model(args, texts, languages, tmp_path).train()
    _freeze(model, 2)
    frozen = [model.encoder.subsampling, *list(model.encoder.layers)[:2]]
    assert not any(p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for p in model.encoder.layers[2].parameters())
    encoder = model.encoder
    x = torch.randn(2, 60, 80)
    with torch.no_grad():
        embedded = encoder._embed(x)
        position = torch.arange(embedded.shape[1])
        distance = position[None, :] - position[:, None]
        full = torch.ones(1, embedded.shape[1], embedded.shape[1], dtype=torch.bool)
        first, *_ = encoder.layers[0](embedded, full, distance, embedded.shape[1])
        again, *_ = encoder.layers[0](encoder._embed(x), full, distance, embedded.shape[1])
    torch.testing.assert_close(first, again)  # in training mode: deterministic, so no dropout


def test_a_new_model_of_one_language_has_no_token_table(tmp_path: Path) -> None:
    """One language (English alone, say, on a Whisper encoder): every token is allowed, no table."""
    args = Namespace(
        seed=0, vocab_size=25, name="one", whisper_encoder=None, d_model=32, num_layers=2, num_heads=2,
        ffn_dim=64, chunk_size=4, left_chunks=2, right_context=1,
    )  # fmt: skip
    model = build_multilingual_model(args, TEXTS["en"], ["en"] * len(TEXTS["en"]), tmp_path)
    assert model.config.languages == ["en"] and model.token_languages is None
    assert model.allowed_tokens(torch.ones(1, 1)) is None
