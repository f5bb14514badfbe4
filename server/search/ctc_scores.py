"""CTC log-probabilities of a beam's N-best token sequences, computed over their prefix tree.

A final's K hypotheses share most of their tokens: scoring each sequence on its own (one
``ctc_loss`` row each) repeats the shared prefix's forward pass K times, and costs
O(K x T x L) for T frames and L tokens, the largest part of finalising a long utterance.
Here every distinct prefix is one node of a tree, scored once from its parent, and each
node's forward variables over all T frames come from two cumulative log-sum-exps (the
recurrences are linear in probability space), so the work is O(nodes x T) in vectorised
steps, one per depth.

For a prefix h = g + c, over frames t = 1 .. T (t = 0: nothing consumed yet):

    n_h(t) = [n_h(t-1) + phi(t-1)] * p_t(c)      ends in c at frame t
    b_h(t) = [b_h(t-1) + n_h(t-1)] * p_t(blank)  ends in blank at frame t
    phi(t) = b_g(t) + n_g(t), or b_g(t) alone when c repeats g's last token

and with C(t) = p_1(c) ... p_t(c), n_h(t) = C(t) * sum_{s<=t} phi(s-1) / C(s-1): a cumulative sum
(in log space, ``logcumsumexp``). The empty prefix has b(t) = p_1(blank) ... p_t(blank),
b(0) = 1. A sequence scores log(n(T) + b(T)); -inf when no alignment fits in T frames.
Float64 inside: the cumulative log-probabilities reach thousands of nats on long utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class _PrefixTree:
    """Prefixes by depth: level d lists its nodes' parent (index in level d-1) and token."""

    parents: list[list[int]] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)
    ends: list[tuple[int, int]] = field(default_factory=list)  # per sequence: (depth, index in level)

    @classmethod
    def of(cls, sequences: Sequence[Sequence[int]]) -> _PrefixTree:
        tree = cls()
        index_of: dict[tuple[int, int, int], int] = {}  # (depth, parent, token) -> index in level depth
        for sequence in sequences:
            node = 0  # the root: the only node of depth 0
            for depth, token in enumerate(sequence, start=1):
                key = (depth, node, token)
                if key not in index_of:
                    if len(tree.parents) < depth:
                        tree.parents.append([])
                        tree.tokens.append([])
                    index_of[key] = len(tree.parents[depth - 1])
                    tree.parents[depth - 1].append(node)
                    tree.tokens[depth - 1].append(token)
                node = index_of[key]
            tree.ends.append((len(sequence), node))
        return tree


def _cumulative(log_probs: Tensor) -> Tensor:
    """(N, T) per-frame log-probabilities -> (N, T + 1) their running sums from t = 0 (0 at t = 0)."""
    return torch.cat([log_probs.new_zeros(log_probs.shape[0], 1), log_probs.cumsum(dim=1)], dim=1)


def _through(start: Tensor, cumulative: Tensor) -> Tensor:
    """Solve v(t) = [v(t-1) + start(t-1)] * p(t) for t >= 1 with v(0) = 0, all in log space.

    start (N, T + 1) log of what enters at each frame; cumulative (N, T + 1) running sums of
    log p -> (N, T + 1) log v, -inf at t = 0."""
    entered = torch.logcumsumexp(start[:, :-1] - cumulative[:, :-1], dim=1) + cumulative[:, 1:]
    return torch.cat([torch.full_like(start[:, :1], float("-inf")), entered], dim=1)


# Below this many frame x token cells (about 3 s of speech in a 32-best list) ``ctc_loss``, one
# row per sequence, is quicker than the tree's per-depth steps (``benchmarks/ctc_scores_speed.py``).
TREE_MIN_CELLS = 60_000


@torch.no_grad()
def ctc_sequence_log_probs(log_probs: Tensor, hypotheses: Sequence[Sequence[int]], blank_id: int) -> Tensor:
    """(K,) log P_ctc of each token sequence given log_probs (T, V), the CTC head's log-softmax
    over one utterance's encoder frames: the sum over all its alignments. A sequence no
    alignment fits in T frames gets -inf. float32 on the CPU.
    """
    cells = log_probs.shape[0] * sum(len(hypothesis) for hypothesis in hypotheses)
    if cells < TREE_MIN_CELLS:
        return ctc_loss_scores(log_probs, hypotheses, blank_id)
    return prefix_tree_scores(log_probs, hypotheses, blank_id)


@torch.no_grad()
def ctc_loss_scores(log_probs: Tensor, hypotheses: Sequence[Sequence[int]], blank_id: int) -> Tensor:
    """``ctc_sequence_log_probs`` with ``torch.nn.functional.ctc_loss``, one row per sequence."""
    count = len(hypotheses)
    frames = log_probs.shape[0]
    targets = [token for hypothesis in hypotheses for token in hypothesis]
    # ctc_loss wants a non-empty target tensor even when every sequence is empty.
    flat = torch.tensor(targets or [blank_id + 1], dtype=torch.int64)
    losses = F.ctc_loss(
        log_probs.detach().float().cpu().unsqueeze(1).expand(frames, count, -1),
        flat,
        torch.full((count,), frames, dtype=torch.int64),
        torch.tensor([len(h) for h in hypotheses], dtype=torch.int64),
        blank=blank_id,
        reduction="none",
        zero_infinity=False,
    )
    return torch.where(torch.isfinite(losses), -losses, torch.tensor(float("-inf")))


@torch.no_grad()
def prefix_tree_scores(log_probs: Tensor, hypotheses: Sequence[Sequence[int]], blank_id: int) -> Tensor:
    """``ctc_sequence_log_probs`` over the sequences' prefix tree (the module docstring)."""
    frames = log_probs.shape[0]
    x = log_probs.detach().to("cpu", torch.float64)  # (T, V)
    blank_cumulative = _cumulative(x[:, blank_id].unsqueeze(0))  # (1, T + 1)
    tree = _PrefixTree.of(hypotheses)
    # The root (empty prefix): only blanks so far.
    ends_blank = blank_cumulative  # (nodes of the level, T + 1)
    ends_token = torch.full_like(ends_blank, float("-inf"))
    last_token = torch.full((1,), -1, dtype=torch.int64)
    finals: list[Tensor] = [torch.logaddexp(ends_blank[:, frames], ends_token[:, frames])]
    for parents, tokens in zip(tree.parents, tree.tokens, strict=True):
        parent = torch.tensor(parents, dtype=torch.int64)
        token = torch.tensor(tokens, dtype=torch.int64)
        parent_blank, parent_token = ends_blank[parent], ends_token[parent]
        # A repeated token needs a blank between the two: it cannot continue the parent's last token.
        repeats = (token == last_token[parent]).unsqueeze(1)
        entry = torch.where(repeats, parent_blank, torch.logaddexp(parent_blank, parent_token))
        token_cumulative = _cumulative(x[:, token].T)  # (N, T + 1)
        ends_token = _through(entry, token_cumulative)
        ends_blank = _through(ends_token, blank_cumulative.expand_as(ends_token))
        last_token = token
        finals.append(torch.logaddexp(ends_blank[:, frames], ends_token[:, frames]))
    scores = torch.stack([finals[depth][index] for depth, index in tree.ends]) if tree.ends else torch.zeros(0)
    return scores.to(torch.float32)
