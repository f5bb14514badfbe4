"""Conformer building blocks, each usable on a whole utterance and on one streaming chunk.

Shapes: B batch, T frames, D model dim, H heads, K key frames, M cached (left-context)
frames. Every streaming cache is passed in and returned; no module keeps state between calls.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Subsampling(nn.Module):
    """Two stride-2 3x3 convolutions without time padding: (B, T, F) -> (B, T', D).

    T' = ((T - 1) // 2 - 1) // 2; output frame j reads input frames 4j .. 4j + 6, so a window
    of 4n + 3 frames gives exactly n output frames and windows advance by 4n frames.
    """

    def __init__(self, num_mel_bins: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2),
            nn.ReLU(),
        )
        freq = ((num_mel_bins - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * freq, d_model)

    @staticmethod
    def output_length(length: Tensor) -> Tensor:
        """Output frames for input lengths (any shape, int64); 0 when shorter than 7."""
        return ((length - 1) // 2 - 1).div(2, rounding_mode="floor").clamp(min=0)

    def forward(self, features: Tensor) -> Tensor:
        x = self.conv(features.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.proj(x.transpose(1, 2).reshape(b, t, c * f))


ACTIVATIONS = {"swish": nn.SiLU, "gelu": nn.GELU}


def is_zero_linear(layer: nn.Module) -> bool:
    """Whether a linear layer's (``nn.Linear`` or its int8 form) weight and bias are all exactly zero."""
    weight, bias = layer.weight, getattr(layer, "bias", None)
    assert isinstance(weight, Tensor), f"not a linear layer: {type(layer).__name__}"
    return not bool(weight.any()) and (bias is None or not bool(bias.any()))


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> Swish (or GELU, Whisper's) -> Dropout -> Linear -> Dropout (per frame)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float, activation: str = "swish") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, ffn_dim),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class RelativePositionAttention(nn.Module):
    """Multi-head self-attention with learned relative position embeddings (Shaw et al. 2018).

    logit[i, j] = q_i . (k_j + r[clip(pos_j - pos_i)]) / sqrt(d_k). Relative distances are
    clipped to +-max_distance, so the same weights serve any utterance length, and a chunk
    with its cache sees exactly the logits that the masked full-utterance forward computes.
    """

    def __init__(self, d_model: int, num_heads: int, max_distance: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.max_distance = max_distance
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.relative_keys = nn.Parameter(torch.randn(num_heads, 2 * max_distance + 1, self.d_k) * 0.02)
        self.dropout = nn.Dropout(dropout)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pre-norm and split heads: (B, T, D) -> q, k, v each (B, H, T, d_k)."""
        b, t, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, t, 3, self.num_heads, self.d_k)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return q, k, v

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        distance: Tensor,
        mask: Tensor,
        key_cache: Tensor | None = None,
        value_cache: Tensor | None = None,
    ) -> Tensor:
        """q (B, H, Tq, d_k), k/v (B, H, K, d_k), distance (Tq, K) int64 = pos_k - pos_q,
        mask (B, Tq, K) bool (True = may attend) -> (B, Tq, D).

        With caches (B, H, M, d_k) the keys are [cache, k] (distance and mask cover M + K): the
        products are taken with each part, so the (larger) caches are never concatenated."""
        b, h, tq, dk = q.shape
        content = torch.matmul(q, k.transpose(-1, -2))  # (B, H, Tq, K)
        if key_cache is not None:
            content = torch.cat([torch.matmul(q, key_cache.transpose(-1, -2)), content], dim=-1)
        position_all = torch.einsum("bhqd,hpd->bhqp", q, self.relative_keys)  # (B, H, Tq, 2P+1)
        index = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        position = torch.gather(position_all, 3, index.expand(b, h, tq, index.shape[-1]))
        logits = (content + position) / math.sqrt(dk)
        # A large finite negative (not -inf) keeps fully masked rows (padding) free of NaN.
        logits = logits.masked_fill(~mask.unsqueeze(1), torch.finfo(logits.dtype).min)
        weights = self.dropout(torch.softmax(logits, dim=-1))
        if value_cache is None:
            context = torch.matmul(weights, v)  # (B, H, Tq, d_k)
        else:
            cached = value_cache.shape[2]
            context = torch.matmul(weights[..., :cached], value_cache) + torch.matmul(weights[..., cached:], v)
        return self.out(context.transpose(1, 2).reshape(b, tq, h * dk))


class ConvolutionModule(nn.Module):
    """LayerNorm -> pointwise (2D) -> GLU -> causal depthwise conv -> LayerNorm -> Swish -> pointwise.

    The depthwise convolution only reads past frames (left padding of kernel - 1), so a
    chunk needs just the last kernel - 1 GLU outputs of the previous chunk as its cache.
    LayerNorm replaces the paper's BatchNorm: per-frame, so padding and batch mix do not
    change a stream's output.
    """

    def __init__(self, d_model: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.depthwise_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, D); cache (B, D, kernel-1) or None (zeros: utterance start).

        Returns (B, T, D) and the new cache (B, D, kernel-1): the last kernel-1 GLU outputs.
        """
        glu = F.glu(self.pointwise_in(self.norm(x)), dim=-1).transpose(1, 2)  # (B, D, T)
        if cache is None:
            cache = glu.new_zeros(glu.shape[0], glu.shape[1], self.kernel - 1)
        padded = torch.cat([cache, glu], dim=2)
        y = self.depthwise(padded).transpose(1, 2)  # (B, T, D)
        y = self.pointwise_out(F.silu(self.depthwise_norm(y)))
        return self.dropout(y), padded[:, :, -(self.kernel - 1) :]


class ConformerBlock(nn.Module):
    """½FFN -> relative-position MHSA -> convolution module -> ½FFN, each pre-normed, with residuals.

    The paper's per-block final LayerNorm is left out (one LayerNorm follows the last block,
    see ``ConformerEncoder``): with it the stack is effectively Post-LN and a deep encoder
    did not learn at all here (docs/decisions/0008-pre-ln-blocks.md).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        kernel: int,
        max_distance: int,
        dropout: float,
        activation: str = "swish",
        macaron_ffn_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.ffn1 = FeedForward(d_model, macaron_ffn_dim or ffn_dim, dropout, activation)
        self.attention = RelativePositionAttention(d_model, num_heads, max_distance, dropout)
        self.conv = ConvolutionModule(d_model, kernel, dropout)
        self.ffn2 = FeedForward(d_model, ffn_dim, dropout, activation)
        self.dropout = nn.Dropout(dropout)
        self.silent: frozenset[str] = frozenset()  # modules skipped in inference, see ``train``

    def train(self, mode: bool = True) -> ConformerBlock:
        """Set the mode; in inference also find the modules whose output layer is exactly zero.

        A Whisper-initialised block starts its first FFN and convolution module with zero output
        (decision 0018); frozen, they stay zero and add nothing but FLOPs (0.2 GFLOP per audio
        second over four blocks), so inference skips them. Training computes every module, or a
        zero-initialised one would never get a gradient.
        """
        super().train(mode)
        outputs = {"ffn1": self.ffn1.net[4], "conv": self.conv.pointwise_out}
        self.silent = frozenset() if mode else frozenset(n for n, layer in outputs.items() if is_zero_linear(layer))
        return self

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        distance: Tensor,
        num_queries: int,
        key_cache: Tensor | None = None,
        value_cache: Tensor | None = None,
        conv_cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One block over x (B, T, D).

        The first ``num_queries`` frames are outputs; any further frames are lookahead that
        only serve as keys/values. With caches (B, H, M, d_k) the keys are
        [cache, frames]; ``mask`` (B, num_queries, M + T) and ``distance`` (num_queries, M + T)
        cover that key layout. Returns the output (B, num_queries, D), the keys and values of
        the query frames (B, H, num_queries, d_k) for the next chunk's cache, and the new
        conv cache.
        """
        if "ffn1" not in self.silent:
            x = x + 0.5 * self.ffn1(x)
        q, k, v = self.attention.project(x)
        new_k, new_v = k[:, :, :num_queries], v[:, :, :num_queries]
        if (key_cache is None) != (value_cache is None):
            raise ValueError("keys and values are cached together")
        x = x[:, :num_queries]
        attended = self.attention.attend(q[:, :, :num_queries], k, v, distance, mask, key_cache, value_cache)
        x = x + self.dropout(attended)
        if "conv" in self.silent:  # its cache is never read while it stays silent
            new_conv_cache = x.new_zeros(x.shape[0], x.shape[2], self.conv.kernel - 1)
        else:
            conv_out, new_conv_cache = self.conv(x, conv_cache)
            x = x + conv_out
        x = x + 0.5 * self.ffn2(x)
        return x, new_k, new_v, new_conv_cache
