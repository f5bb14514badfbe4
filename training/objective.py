"""The training objective: RNN-T loss plus an auxiliary CTC loss, under a per-batch attention mask.

Dynamic chunk training: each batch draws its attention mask (``sample_mask``): the serving mask
most of the time, otherwise a random chunk size / history or full context, so one model serves
its streaming configuration and also decodes offline (full context) for comparison.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from server.model.config import EncoderConfig
from server.model.transducer import StreamingTransducer
from training.batching import Batch
from training.rnnt_loss import rnnt_loss


def sample_mask(rng: random.Random, config: EncoderConfig, serve_prob: float) -> tuple[int | None, int | None, int]:
    """(chunk_size, left_chunks, right_context) for one batch."""
    draw = rng.random()
    if draw < serve_prob:
        return config.chunk_size, config.left_chunks, config.right_context
    if draw < serve_prob + (1 - serve_prob) / 3:
        return None, None, 0
    chunk = rng.randint(2, 24)
    return chunk, rng.choice([None, rng.randint(1, 16)]), rng.randint(0, min(chunk, 4))


class Losses(NamedTuple):
    total: torch.Tensor  # what is minimised
    rnnt: torch.Tensor  # per target token
    ctc: torch.Tensor  # per target token (0 without a CTC head)


def transducer_loss(
    model: StreamingTransducer,
    batch: Batch,
    mask: tuple[int | None, int | None, int],
    ctc_head: nn.Linear | None = None,
    ctc_weight: float = 0.0,
) -> Losses:
    """RNN-T loss per target token, plus ``ctc_weight`` x an auxiliary CTC loss on the encoder.

    The CTC head (training only, never shipped) gives the encoder a direct alignment signal,
    which gets a transducer trained from scratch past its all-blank phase much sooner.

    ``batch.features`` are fbank frames, or (``batch.encoded_layers`` N > 0) the encoder's frozen
    first N blocks' output (``training.prefix_cache``), which the encoder continues from block N.
    """
    chunk, left, right = mask
    weights = batch.language_weights
    if weights is not None:
        weights = weights / weights.sum(dim=1, keepdim=True)
    if batch.encoded_layers:
        encoder_out, lengths = model.encoder.forward_from(
            batch.features, batch.feature_lengths, batch.encoded_layers, chunk, left, right, weights
        )
    else:
        encoder_out, lengths = model.encoder(batch.features, batch.feature_lengths, chunk, left, right, weights)
    return losses_from_encoder(model, encoder_out, lengths, batch, weights, ctc_head, ctc_weight)


def losses_from_encoder(
    model: StreamingTransducer,
    encoder_out: Tensor,
    lengths: Tensor,
    batch: Batch,
    language_weights: Tensor | None,
    ctc_head: nn.Linear | None = None,
    ctc_weight: float = 0.0,
) -> Losses:
    """The losses of ``transducer_loss`` from the encoder's output (B, T', D) and lengths (B,):
    joiner, RNN-T, CTC, under the output restriction of ``language_weights`` (B, K) (rows summing
    to 1; None: no restriction)."""
    decoder_out = model.decoder.training_input(batch.targets)  # (B, U+1, E)
    logits = model.joiner(encoder_out[:, :, None], decoder_out[:, None])  # (B, T', U+1, V)
    # CMM: train with the output restriction served, each utterance to its mask's languages' tokens
    # (its own tokens are always in: the table comes from the training texts).
    allowed = None if language_weights is None else model.allowed_tokens(language_weights)
    if allowed is not None:
        logits = logits.masked_fill(~allowed[:, None, None, :], -1e4)
    blank = model.tokenizer.blank_id
    rnnt = rnnt_loss(logits, batch.targets, lengths, batch.target_lengths, blank=blank)
    ctc = torch.zeros((), device=rnnt.device)
    if ctc_head is not None and ctc_weight > 0:
        ctc_logits = ctc_head(encoder_out).float()
        if allowed is not None:
            ctc_logits = ctc_logits.masked_fill(~allowed[:, None, :], -1e4)
        log_probs = ctc_logits.log_softmax(dim=-1).transpose(0, 1)  # (T', B, V)
        ctc = F.ctc_loss(
            log_probs, batch.targets, lengths, batch.target_lengths, blank=blank, reduction="sum", zero_infinity=True
        ) / batch.target_lengths.sum().clamp(min=1)
    return Losses(rnnt + ctc_weight * ctc, rnnt, ctc)
