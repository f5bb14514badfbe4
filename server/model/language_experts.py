"""Language-specific modules of a configurable multilingual model (CMM, Zhou et al. ICASSP 2022).

Each encoder block has one (low-rank) linear expert per language; a stream's expert outputs are
combined with its language weights (the request's multi-hot mask normalised to sum 1) and added
to the block's universal output. Every frame's mix depends only on that frame and its stream's
weights, so a batch of streams with different masks gives each exactly what it gets alone. The
experts' output side starts at zero: training begins from the universal model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LanguageExperts(nn.Module):
    """``num_languages`` low-rank linear maps d_model -> rank -> d_model, mixed per stream.

    out = sum_k w_k (x A_k B_k + b_k): the down-projections of all languages are one matmul,
    each stream's weights scale its languages' rank-r parts, and one matmul maps them back.
    ``B_k`` and ``b_k`` start at zero.
    """

    def __init__(self, num_languages: int, d_model: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(num_languages, d_model, rank) / d_model**0.5)
        self.up = nn.Parameter(torch.zeros(num_languages, rank, d_model))
        self.bias = nn.Parameter(torch.zeros(num_languages, d_model))
        self.silent = False  # set by ``train``

    def train(self, mode: bool = True) -> LanguageExperts:
        """Set the mode; in inference also note whether the experts' output is exactly zero (a
        frozen block's experts never leave their zero start), so the encoder can skip them."""
        super().train(mode)
        self.silent = not mode and not bool(self.up.any()) and not bool(self.bias.any())
        return self

    def forward(self, x: Tensor, language_weights: Tensor) -> Tensor:
        """x (B, T, D), language_weights (B, K) summing to 1 per row -> the experts' mix (B, T, D)."""
        weights = language_weights.to(x.dtype)
        hidden = torch.einsum("btd,kdr->btkr", x, self.down.to(x.dtype)) * weights[:, None, :, None]
        return torch.einsum("btkr,krd->btd", hidden, self.up.to(x.dtype)) + (weights @ self.bias.to(x.dtype))[:, None]
