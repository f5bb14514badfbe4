"""Language-specific modules of a configurable multilingual model (CMM, Zhou et al. ICASSP 2022).

Each encoder block has one linear expert per language; a stream's expert outputs are combined
with its language weights (the request's multi-hot mask normalised to sum 1) and added to the
block's universal output. Since the experts are linear, the combination is one mixed linear
map per stream: sum_k w_k (x W_k + b_k) = x (sum_k w_k W_k) + sum_k w_k b_k, so a batch of
streams with different masks costs one batched matmul, and each stream gets exactly what it
gets alone. The experts start at zero: training begins from the universal model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LanguageExperts(nn.Module):
    """``num_languages`` linear maps d_model -> d_model, mixed per stream."""

    def __init__(self, num_languages: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_languages, d_model, d_model))
        self.bias = nn.Parameter(torch.zeros(num_languages, d_model))

    def forward(self, x: Tensor, language_weights: Tensor) -> Tensor:
        """x (B, T, D), language_weights (B, K) summing to 1 per row -> the experts' mix (B, T, D)."""
        mixed_weight = torch.einsum("bk,kde->bde", language_weights.to(x.dtype), self.weight.to(x.dtype))
        mixed_bias = language_weights.to(x.dtype) @ self.bias.to(x.dtype)  # (B, D)
        return torch.bmm(x, mixed_weight) + mixed_bias[:, None, :]
