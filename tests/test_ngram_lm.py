"""Token n-gram LM: interpolated Kneser-Ney against a direct implementation, files, errors."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch

from server.search.ngram_lm import TokenNgramLM, build_ngram_lm

VOCAB = 7  # token 0 is the blank / sentence-start pad
CORPUS = [[1, 2, 3], [1, 2, 4], [2, 3, 1, 2], [5, 1, 2, 3, 6], [3, 3, 2], [6, 5, 4, 1]]
DISCOUNT = 0.75


def reference_kn(order: int, context: tuple[int, ...], token: int) -> float:
    """Interpolated Kneser-Ney written out term by term from its definition."""
    padded = [[0] * (order - 1) + s for s in CORPUS]
    # n-grams that end in a real token (the pad is context only), over the padded sentences.
    grams = {
        n: Counter(tuple(s[i : i + n]) for s in padded for i in range(len(s) - n + 1) if s[i + n - 1] != 0)
        for n in range(1, order + 1)
    }
    # Continuation counts for the lower orders: distinct left neighbours among (n+1)-grams.
    continuation: dict[int, Counter] = {}
    for n in range(1, order):
        left = defaultdict(set)
        for gram in grams[n + 1]:
            left[gram[1:]].add(gram[0])
        continuation[n] = Counter({gram: len(s) for gram, s in left.items()})
    continuation[order] = grams[order]

    def prob(ctx: tuple[int, ...]) -> float:
        n = len(ctx) + 1
        table = continuation[n]
        seen = {g: c for g, c in table.items() if g[:-1] == ctx}
        lower = 1.0 / VOCAB if n == 1 else prob(ctx[1:])
        if not seen:
            return lower
        total = sum(seen.values())
        own = max(seen.get(ctx + (token,), 0) - DISCOUNT, 0.0) / total
        weight = DISCOUNT * len(seen) / total
        if n == 1:  # the pad/blank is never predicted: its uniform share is removed and renormalised
            return 0.0 if token == 0 else (own + weight * lower) / (1.0 - weight * lower)
        return own + weight * lower

    return prob(context)


@pytest.mark.parametrize("order", [2, 3])
def test_probabilities_match_the_textbook_formula(order: int) -> None:
    lm = build_ngram_lm(CORPUS, VOCAB, order=order, discount=DISCOUNT)
    contexts = [(0,) * (order - 1), (1, 2)[-(order - 1) :], (2, 3)[-(order - 1) :], (6, 6)[-(order - 1) :]]
    rows = lm.log_probs(torch.tensor(contexts)).exp()
    for context, row in zip(contexts, rows, strict=True):
        expected = torch.tensor([reference_kn(order, context, t) for t in range(VOCAB)], dtype=torch.float32)
        assert torch.allclose(row, expected, atol=1e-5), (context, row, expected)


def test_every_row_is_a_distribution_and_prefers_what_was_seen() -> None:
    lm = build_ngram_lm(CORPUS * 3, VOCAB, order=3)
    all_contexts = torch.cartesian_prod(torch.arange(VOCAB), torch.arange(VOCAB))
    rows = lm.log_probs(all_contexts).exp()
    assert torch.allclose(rows.sum(dim=1), torch.ones(len(all_contexts)), atol=1e-5)
    after_1_2 = lm.log_probs(torch.tensor([[1, 2]]))[0]
    assert after_1_2.argmax().item() == 3  # "1 2 3" is the most frequent continuation
    # Unseen contexts back off to their seen suffix: (4, 2) and (6, 2) never occur, (2,) does,
    # so both get the same row, which differs from the seen context (1, 2).
    unseen = lm.log_probs(torch.tensor([[4, 2], [6, 2], [1, 2]]))
    assert torch.equal(unseen[0], unseen[1])
    assert not torch.allclose(unseen[0], unseen[2])


def test_min_count_prunes_entries_and_keeps_rows_normalised() -> None:
    full = build_ngram_lm(CORPUS * 2 + [[5, 6, 5]], VOCAB, order=3)
    pruned = build_ngram_lm(CORPUS * 2 + [[5, 6, 5]], VOCAB, order=3, min_count=2)
    assert pruned.num_entries < full.num_entries
    rows = pruned.log_probs(torch.cartesian_prod(torch.arange(VOCAB), torch.arange(VOCAB))).exp()
    assert torch.allclose(rows.sum(dim=1), torch.ones(VOCAB * VOCAB), atol=1e-5)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    lm = build_ngram_lm(CORPUS, VOCAB, order=4)
    path = tmp_path / "lm.safetensors"
    lm.save(path, metadata={"sentences": len(CORPUS)})
    loaded = TokenNgramLM.load(path)
    contexts = torch.randint(0, VOCAB, (50, 3))
    assert loaded.order == 4 and loaded.vocab_size == VOCAB
    assert torch.allclose(loaded.log_probs(contexts).exp(), lm.log_probs(contexts).exp(), atol=1e-3)


def test_broken_lm_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        TokenNgramLM.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    wrong_version = tmp_path / "old.safetensors"
    save_file({"unigram": torch.zeros(VOCAB)}, str(wrong_version), metadata={"format_version": "99"})
    with pytest.raises(ValueError, match="old.safetensors: unknown LM format version"):
        TokenNgramLM.load(wrong_version)
    incomplete = tmp_path / "incomplete.safetensors"
    save_file(
        {"unigram": torch.zeros(VOCAB)},
        str(incomplete),
        metadata={"format_version": "1", "order": "3", "vocab_size": str(VOCAB)},
    )
    with pytest.raises(ValueError, match="incomplete.safetensors: incomplete LM file"):
        TokenNgramLM.load(incomplete)


def test_reference_is_a_distribution() -> None:
    """Guard the test's own formula: it must sum to one over the vocabulary."""
    total = sum(reference_kn(3, (1, 2), t) for t in range(VOCAB))
    assert math.isclose(total, 1.0, rel_tol=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_single_target_query_equals_the_full_rows(order: int) -> None:
    lm = build_ngram_lm(CORPUS, VOCAB, order=order, discount=DISCOUNT, min_count=2 if order == 4 else 1)
    grid = torch.cartesian_prod(*[torch.arange(VOCAB)] * max(order - 1, 1))
    contexts = grid.reshape(-1, max(order - 1, 1))[:, : order - 1]
    targets = torch.arange(contexts.shape[0]) % VOCAB
    full = lm.log_probs(contexts)[torch.arange(contexts.shape[0]), targets]
    assert torch.allclose(lm.log_prob_of(contexts, targets), full, atol=1e-5)
