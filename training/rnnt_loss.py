"""RNN-T loss (Graves 2012), vectorised in PyTorch.

torchaudio's loss does not import on these machines (see the brief) and the CUDA-only
packages do not help on CPU, so the forward variable is computed here and autograd gives
the gradient. Each lattice row t is one vectorised step: within a row, alpha obeys
alpha[t,u] = logaddexp(alpha[t-1,u] + blank[t-1,u], alpha[t,u-1] + label[t,u-1]), whose
solution is a log-cumulative-sum:
    alpha[t,u] = c[u] + logcumsumexp_u'(alpha[t-1,u'] + blank[t-1,u'] - c[u']),
with c[u] = sum_{k<u} label[t,k].
"""

from __future__ import annotations

import torch
from torch import Tensor


def rnnt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = 0,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of the targets summed over all alignments.

    logits (B, T, U + 1, V) joint network outputs (unnormalised), targets (B, U) int64,
    logit_lengths (B,), target_lengths (B,). ``reduction``: "none" -> (B,), "sum", or
    "mean" (sum divided by the total number of target tokens, which keeps the loss scale
    independent of batch composition).
    """
    log_probs = logits.float().log_softmax(dim=-1)
    batch, num_frames, num_rows, _ = log_probs.shape
    blank_lp = log_probs[..., blank]  # (B, T, U+1)
    index = targets[:, None, :, None].expand(batch, num_frames, num_rows - 1, 1)
    label_lp = log_probs[:, :, :-1].gather(-1, index).squeeze(-1)  # (B, T, U)

    zero = blank_lp.new_zeros(batch, 1)
    alphas = []
    alpha = torch.cat([zero, label_lp[:, 0].cumsum(dim=-1)], dim=-1)  # row t = 0
    alphas.append(alpha)
    for t in range(1, num_frames):
        from_below = alpha + blank_lp[:, t - 1]
        c = torch.cat([zero, label_lp[:, t].cumsum(dim=-1)], dim=-1)
        alpha = c + torch.logcumsumexp(from_below - c, dim=-1)
        alphas.append(alpha)
    alpha_all = torch.stack(alphas, dim=1)  # (B, T, U+1)

    rows = torch.arange(batch, device=logits.device)
    last_t = logit_lengths - 1
    log_likelihood = alpha_all[rows, last_t, target_lengths] + blank_lp[rows, last_t, target_lengths]
    loss = -log_likelihood
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / target_lengths.sum().clamp(min=1)
