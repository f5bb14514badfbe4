"""The vectorised RNN-T loss equals brute-force enumeration of all alignments."""

from __future__ import annotations

import itertools
import math

import torch

from training.rnnt_loss import rnnt_loss


def _brute_force_nll(log_probs: torch.Tensor, target: list[int], blank: int) -> float:
    """Sum over every monotonic path of T blanks and U labels through the lattice."""
    num_frames = log_probs.shape[0]
    num_labels = len(target)
    total = []
    # An alignment is the positions of the U labels among T + U - 1 emissions before the
    # final blank; equivalently, choose which of the T + U steps are labels (last is blank).
    steps = num_frames + num_labels
    for label_positions in itertools.combinations(range(steps - 1), num_labels):
        t, u, score = 0, 0, 0.0
        for step in range(steps):
            if step in label_positions:
                score += log_probs[t, u, target[u]].item()
                u += 1
            else:
                score += log_probs[t, u, blank].item()
                t += 1
        assert t == num_frames and u == num_labels
        total.append(score)
    return -math.log(sum(math.exp(s) for s in total))


def test_matches_brute_force_on_tiny_batches() -> None:
    torch.manual_seed(0)
    vocab, blank = 5, 0
    cases = [(4, [1, 2]), (3, [3]), (5, [2, 2, 4]), (2, []), (1, [1, 3])]
    max_t = max(t for t, _ in cases)
    max_u = max(len(y) for _, y in cases)
    logits = torch.randn(len(cases), max_t, max_u + 1, vocab, dtype=torch.float64)
    targets = torch.zeros(len(cases), max_u, dtype=torch.int64)
    for row, (_, target) in enumerate(cases):
        targets[row, : len(target)] = torch.tensor(target, dtype=torch.int64)
    logit_lengths = torch.tensor([t for t, _ in cases])
    target_lengths = torch.tensor([len(y) for _, y in cases])
    losses = rnnt_loss(logits, targets, logit_lengths, target_lengths, blank=blank, reduction="none")
    log_probs = logits.float().log_softmax(-1)
    for row, (frames, target) in enumerate(cases):
        expected = _brute_force_nll(log_probs[row, :frames, : len(target) + 1], target, blank)
        assert abs(losses[row].item() - expected) < 1e-4, (row, losses[row].item(), expected)


def test_gradient_is_finite_and_descends() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 4, 7, requires_grad=True)
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    lengths, target_lengths = torch.tensor([6, 5]), torch.tensor([3, 2])
    loss = rnnt_loss(logits, targets, lengths, target_lengths)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad
    assert rnnt_loss(stepped, targets, lengths, target_lengths).item() < loss.item()
