"""Streaming Conformer encoder: masked full-utterance forward and chunk-by-chunk step.

Both paths compute the same function (tests/test_streaming_equivalence.py): the masked
forward is what training and offline evaluation use, the step is what the server runs.
Encoder frames are 4 fbank frames (40 ms). Chunk k holds encoder frames
[k*C, (k+1)*C); a frame attends to its own chunk and ``left_chunks`` chunks before it, and
in the first layer also to the first ``right_context`` frames of the next chunk. Later
layers get no lookahead, so the algorithmic latency is (C + R) frames and the step can
recompute the lookahead frames of layer 0 from the features alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from server.model.config import EncoderConfig, FeatureConfig
from server.model.conformer import ConformerBlock, Subsampling
from server.model.frames import SUBSAMPLING_EXTRA_FRAMES, SUBSAMPLING_FACTOR
from server.model.language_experts import LanguageExperts
from server.model.whisper_stem import WhisperStem


def chunk_attention_mask(
    num_frames: int, chunk_size: int | None, left_chunks: int | None, right_context: int, device: torch.device
) -> Tensor:
    """(T, T) bool, True where query frame t may attend key frame tau.

    ``chunk_size`` None means full context; ``left_chunks`` None means unlimited history.
    """
    if chunk_size is None:
        return torch.ones(num_frames, num_frames, dtype=torch.bool, device=device)
    index = torch.arange(num_frames, device=device)
    query_chunk = index // chunk_size
    allowed = index[None, :] < ((query_chunk + 1) * chunk_size + right_context)[:, None]
    if left_chunks is not None:
        allowed &= (index[None, :] // chunk_size) >= (query_chunk - left_chunks)[:, None]
    return allowed


class ConformerEncoder(nn.Module):
    """Global CMVN -> 4x conv subsampling -> Conformer blocks."""

    # Registered buffers (global CMVN statistics, set by training; absolute positions, if any),
    # declared for the type checker.
    feature_mean: Tensor
    feature_std: Tensor
    position_table: Tensor | None

    def __init__(self, config: EncoderConfig, features: FeatureConfig, num_languages: int = 1) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(features.num_mel_bins))
        self.register_buffer("feature_std", torch.ones(features.num_mel_bins))
        self.subsampling: nn.Module = (
            WhisperStem(features.num_mel_bins, config.d_model)
            if config.frontend == "whisper"
            else Subsampling(features.num_mel_bins, config.subsampling_channels, config.d_model)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            ConformerBlock(
                config.d_model,
                config.num_heads,
                config.ffn_dim,
                config.conv_kernel,
                config.max_relative_distance,
                config.dropout,
                config.activation,
                config.macaron_ffn_dim,
            )
            for _ in range(config.num_layers)
        )
        self.output_norm = nn.LayerNorm(config.d_model)
        table = torch.zeros(config.absolute_positions, config.d_model) if config.absolute_positions else None
        self.register_buffer("position_table", table)  # None registers nothing to save
        self.num_languages = num_languages
        self.experts = (
            nn.ModuleList(
                LanguageExperts(num_languages, config.d_model, config.language_expert_rank)
                for _ in range(config.num_layers)
            )
            if config.language_experts
            else None
        )

    def _with_experts(self, index: int, x: Tensor, language_weights: Tensor | None) -> Tensor:
        """Block ``index``'s universal output x (B, T, D) plus its language experts' mix (CMM)."""
        if self.experts is None or self.experts[index].silent:
            return x
        if language_weights is None:
            language_weights = x.new_full((x.shape[0], self.num_languages), 1.0 / self.num_languages)
        return x + self.experts[index](x, language_weights)

    # -- geometry -------------------------------------------------------------------------
    @property
    def cache_frames(self) -> int:
        """M: left-context encoder frames kept per layer."""
        return self.config.left_chunks * self.config.chunk_size

    @property
    def feature_window(self) -> int:
        """Fbank frames one streaming step reads: chunk + lookahead + subsampling context."""
        return SUBSAMPLING_FACTOR * (self.config.chunk_size + self.config.right_context) + SUBSAMPLING_EXTRA_FRAMES

    @property
    def feature_shift(self) -> int:
        """Fbank frames the window advances after a full chunk."""
        return SUBSAMPLING_FACTOR * self.config.chunk_size

    def _embed(self, features: Tensor, first_frame: Tensor | None = None) -> Tensor:
        """features (B, T, F) -> stem output (B, T', D); ``first_frame`` (B,) is the stream index of
        each row's first output frame (None: 0), for the absolute positions if the encoder has them."""
        embedded = self.subsampling((features - self.feature_mean) / self.feature_std)
        if self.position_table is not None:
            index = torch.arange(embedded.shape[1], device=embedded.device)[None, :]
            if first_frame is not None:
                index = index + first_frame[:, None]
            embedded = embedded + self.position_table[index % self.position_table.shape[0]]
        if self.config.frontend == "whisper":
            return self.dropout(embedded)  # Whisper's stem output is what its blocks were trained on
        # x sqrt(d_model) as in the Transformer/Conformer front ends: without it the acoustic
        # input is small next to what the attention modules add to the residual stream, and
        # a deep encoder collapses to a constant output early in training (observed here).
        return self.dropout(embedded * math.sqrt(self.config.d_model))

    # -- whole utterance ------------------------------------------------------------------
    def _resolve_mask(
        self, chunk_size: int | None, left_chunks: int | None, right_context: int
    ) -> tuple[int | None, int | None, int]:
        """The mask arguments with the -1 defaults replaced by the serving configuration."""
        if chunk_size == -1:
            chunk_size = self.config.chunk_size
        if left_chunks == -1:
            left_chunks = self.config.left_chunks
        if right_context == -1:
            right_context = self.config.right_context
        return chunk_size, left_chunks, right_context

    def _layer_masks(
        self,
        x: Tensor,
        lengths: Tensor,
        chunk_size: int | None,
        left_chunks: int | None,
        right_context: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The attention masks of x (B, T', D) with ``lengths`` (B,) valid frames: layer 0's
        (B, T', T') (with the lookahead), the later layers' (B, T', T') (without), and the
        relative distances (T', T')."""
        num_frames = x.shape[1]
        position = torch.arange(num_frames, device=x.device)
        distance = position[None, :] - position[:, None]
        key_valid = (position[None, :] < lengths[:, None])[:, None, :]  # (B, 1, T')
        mask_rest = chunk_attention_mask(num_frames, chunk_size, left_chunks, 0, x.device)[None] & key_valid
        mask_first = mask_rest
        if right_context and chunk_size is not None:
            mask_first = chunk_attention_mask(num_frames, chunk_size, left_chunks, right_context, x.device)
            mask_first = mask_first[None] & key_valid
        return mask_first, mask_rest, distance

    def _run_layers(
        self,
        x: Tensor,
        lengths: Tensor,
        layers: range,
        chunk_size: int | None,
        left_chunks: int | None,
        right_context: int,
        language_weights: Tensor | None,
    ) -> Tensor:
        """Blocks ``layers`` (each with its language experts) over x (B, T', D) -> (B, T', D)."""
        chunk_size, left_chunks, right_context = self._resolve_mask(chunk_size, left_chunks, right_context)
        if not layers:
            return x
        mask_first, mask_rest, distance = self._layer_masks(x, lengths, chunk_size, left_chunks, right_context)
        for index in layers:
            x, _, _, _ = self.layers[index](x, mask_first if index == 0 else mask_rest, distance, x.shape[1])
            x = self._with_experts(index, x, language_weights)
        return x

    def forward_prefix(
        self,
        features: Tensor,
        feature_lengths: Tensor,
        num_layers: int,
        chunk_size: int | None = -1,
        left_chunks: int | None = -1,
        right_context: int = -1,
        language_weights: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The stem and the first ``num_layers`` blocks (with their language experts): the lower part of
        ``forward``.

        features (B, T, F), feature_lengths (B,) in fbank frames -> x (B, T', D), the residual
        stream after block ``num_layers - 1`` (the stem's output for 0), and lengths (B,) in encoder
        frames, T' = ((T - 1) // 2 - 1) // 2. No output norm. Mask arguments as in ``forward``.
        """
        if not 0 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers {num_layers} is not in 0..{len(self.layers)}")
        x = self._embed(features)
        lengths = Subsampling.output_length(feature_lengths)
        x = self._run_layers(x, lengths, range(num_layers), chunk_size, left_chunks, right_context, language_weights)
        return x, lengths

    def forward_from(
        self,
        x: Tensor,
        lengths: Tensor,
        start_layer: int,
        chunk_size: int | None = -1,
        left_chunks: int | None = -1,
        right_context: int = -1,
        language_weights: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Blocks ``start_layer`` .. last and the output norm: the upper part of ``forward``.

        x (B, T', D) as ``forward_prefix(..., num_layers=start_layer)`` returns it, lengths (B,) in
        encoder frames -> (output_norm(x) (B, T', D), lengths (B,)). ``right_context`` only matters
        when ``start_layer`` is 0 (only block 0 looks ahead). Mask arguments as in ``forward``.
        """
        if not 0 <= start_layer <= len(self.layers):
            raise ValueError(f"start_layer {start_layer} is not in 0..{len(self.layers)}")
        layers = range(start_layer, len(self.layers))
        x = self._run_layers(x, lengths, layers, chunk_size, left_chunks, right_context, language_weights)
        return self.output_norm(x), lengths

    def forward(
        self,
        features: Tensor,
        feature_lengths: Tensor,
        chunk_size: int | None = -1,
        left_chunks: int | None = -1,
        right_context: int = -1,
        language_weights: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """features (B, T, F), feature_lengths (B,) -> (B, T', D), lengths (B,).

        language_weights (B, num_languages), rows summing to 1, mix the CMM language experts
        (None: all languages alike).

        The mask defaults (-1) to the serving configuration; ``chunk_size=None`` is
        full context (offline); ``left_chunks=None`` is unlimited history.
        """
        mask = (chunk_size, left_chunks, right_context)
        x, lengths = self.forward_prefix(features, feature_lengths, 0, *mask, language_weights=language_weights)
        return self.forward_from(x, lengths, 0, *mask, language_weights=language_weights)

    # -- streaming ------------------------------------------------------------------------
    def init_caches(self, batch: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Zero caches for ``batch`` new streams (shapes as in ``StreamState``)."""
        c = self.config
        d_k = c.d_model // c.num_heads
        return {
            "attn_keys": torch.zeros(batch, c.num_layers, c.num_heads, self.cache_frames, d_k, device=device),
            "attn_values": torch.zeros(batch, c.num_layers, c.num_heads, self.cache_frames, d_k, device=device),
            "conv_cache": torch.zeros(batch, c.num_layers, c.d_model, c.conv_kernel - 1, device=device),
            "chunks_done": torch.zeros(batch, dtype=torch.int64, device=device),
        }

    def step(
        self,
        features: Tensor,
        num_feature_frames: Tensor,
        attn_keys: Tensor,
        attn_values: Tensor,
        conv_cache: Tensor,
        chunks_done: Tensor,
        language_weights: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Encode one chunk of each of B streams, which may be at different positions.

        features: (B, feature_window, F), zero-padded beyond ``num_feature_frames`` (B,).
        Caches as in ``StreamState``. Returns encoder frames (B, C, D), the number of valid
        frames per stream (B,) (C except at a final flush), and the new attn_keys,
        attn_values, conv_cache. ``chunks_done`` is not advanced here; the caller adds 1.
        A step with fewer than C valid frames ends the stream: its new caches are not
        meaningful.
        """
        c = self.config
        chunk, right, cache = c.chunk_size, c.right_context, self.cache_frames
        x = self._embed(features, chunks_done * self.config.chunk_size)  # (B, C + R, D)
        batch, device = x.shape[0], x.device
        valid = Subsampling.output_length(num_feature_frames).clamp(max=chunk + right)
        cached = (chunks_done * chunk).clamp(max=cache)
        cache_valid = torch.arange(cache, device=device)[None, :] >= (cache - cached)[:, None]  # (B, M)
        frame_valid = torch.arange(chunk + right, device=device)[None, :] < valid[:, None]  # (B, C + R)
        mask_first = torch.cat([cache_valid, frame_valid], dim=1)[:, None, :].expand(batch, chunk, -1)
        mask_rest = torch.cat([cache_valid, frame_valid[:, :chunk]], dim=1)[:, None, :].expand(batch, chunk, -1)
        key_position = torch.arange(-cache, chunk + right, device=device)
        query_position = torch.arange(chunk, device=device)
        distance_first = key_position[None, :] - query_position[:, None]
        distance_rest = distance_first[:, : cache + chunk]

        # The new caches are written layer by layer into buffers of their final shape: each byte of
        # the (largest) state is copied once per step, not concatenated, sliced and stacked.
        new_keys, new_values = torch.empty_like(attn_keys), torch.empty_like(attn_values)
        new_conv = torch.empty_like(conv_cache)
        kept = cache - chunk  # cached frames still in the window after this chunk (left_chunks >= 1)
        for index, layer in enumerate(self.layers):
            first = index == 0
            x, k, v, conv = layer(
                x,
                mask_first if first else mask_rest,
                distance_first if first else distance_rest,
                chunk,
                attn_keys[:, index],
                attn_values[:, index],
                conv_cache[:, index],
            )
            x = self._with_experts(index, x, language_weights)
            for old, new, latest in ((attn_keys, new_keys, k), (attn_values, new_values, v)):
                new[:, index, :, :kept] = old[:, index, :, chunk:]
                new[:, index, :, kept:] = latest
            new_conv[:, index] = conv
        return self.output_norm(x), valid.clamp(max=chunk), new_keys, new_values, new_conv
