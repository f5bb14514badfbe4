"""A tiny random-init checkpoint for unit tests of shapes, plumbing and errors (it recognizes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from server.model.checkpoint import save_model
from server.model.config import DecoderConfig, EncoderConfig, ModelConfig, TokenizerConfig
from server.model.tokenizer import CHANNEL_CHANGE_PIECE, Tokenizer, train_tokenizer
from server.model.transducer import StreamingTransducer

# The tokenizer's training text (the server tests speak it too: all its words are in the vocabulary).
RANDOM_MODEL_TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "please call me back tomorrow morning",
    "we will meet at the station at nine",
    "how much does the blue one cost",
    "she said that the weather would be fine",
    "turn left at the next light and keep going",
]


def tiny_encoder_config(
    d_model: int, num_layers: int, conv_kernel: int, right_context: int, **options: Any
) -> EncoderConfig:
    """A small streaming Conformer encoder for tests: heads of 16 channels, FFNs of 2 x ``d_model``, a
    ``d_model / 4``-channel subsampling stem, chunks of 4 frames with 2 left chunks; ``options``: the rest."""
    return EncoderConfig(
        d_model=d_model,
        num_layers=num_layers,
        num_heads=d_model // 16,
        ffn_dim=2 * d_model,
        conv_kernel=conv_kernel,
        subsampling_channels=d_model // 4,
        chunk_size=4,
        left_chunks=2,
        right_context=right_context,
        **options,
    )


def save_random_model(
    model_dir: Path,
    multi_talker: bool = False,
    languages: list[str] | None = None,
    seed: int = 0,
    ctc_head: bool = False,
    language_experts: bool = False,
) -> Path:
    """Write a tiny random-init checkpoint (for unit tests of shapes, plumbing and errors only)."""
    model_dir = Path(model_dir)
    special = [CHANNEL_CHANGE_PIECE] if multi_talker else []
    tokenizer_file = train_tokenizer(RANDOM_MODEL_TEXT * 20, model_dir / "tokenizer", 40, special)
    tokenizer = Tokenizer(tokenizer_file, CHANNEL_CHANGE_PIECE if multi_talker else None)
    config = ModelConfig(
        name=model_dir.name,
        languages=languages or ["en"],
        multi_talker=multi_talker,
        encoder=tiny_encoder_config(
            32, num_layers=2, conv_kernel=5, right_context=1, language_experts=language_experts, language_expert_rank=8
        ),
        decoder=DecoderConfig(embed_dim=16, context_size=2),
        joiner_dim=32,
        ctc_head=ctc_head,
        tokenizer=TokenizerConfig(
            file=tokenizer_file.name,
            vocab_size=tokenizer.vocab_size,
            channel_change_token=CHANNEL_CHANGE_PIECE if multi_talker else None,
        ),
    )
    torch.manual_seed(seed)
    model = StreamingTransducer(config, tokenizer)
    return save_model(model, model_dir, half=False, model_card="# Random-init test model\n\nRecognizes nothing.\n")
