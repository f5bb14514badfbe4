"""Whisper's convolution stem, made streamable: the front end of a Whisper-initialised encoder.

Whisper reads 80-bin log-mel frames at 100 Hz through gelu(conv1) (kernel 3, stride 1) and
gelu(conv2) (kernel 3, stride 2) to 50 Hz. Here both convolutions are unpadded, so a chunk
never reads zeros where a stream has audio, and a stride-2 pair pooling (a learned kernel-2
convolution that starts as the mean of the two frames) brings the rate to 25 Hz, the encoder
frame of every model here. Output frame j then reads input frames 4j .. 4j + 6, exactly as
``conformer.Subsampling`` does, so the windowing and its length formula carry over unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WhisperStem(nn.Module):
    """(B, T, n_mels) log-mel -> (B, T', d_model), T' = ((T - 1) // 2 - 1) // 2."""

    def __init__(self, num_mel_bins: int, d_model: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(num_mel_bins, d_model, 3)
        self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2)
        self.pool = nn.Conv1d(d_model, d_model, 2, stride=2)
        # Start as the mean of each pair of 50 Hz frames: Whisper's features, at half the rate.
        mean_of_pair = 0.5 * torch.eye(d_model)[:, :, None].expand(d_model, d_model, 2)
        self.pool.load_state_dict({"weight": mean_of_pair.clone(), "bias": torch.zeros(d_model)})

    def forward(self, features: Tensor) -> Tensor:
        x = F.gelu(self.conv1(features.transpose(1, 2)))
        x = F.gelu(self.conv2(x))
        return self.pool(x).transpose(1, 2)
