"""Can a model learn a trivially separable sequence task with CTC? (open question of session 1)

Each target token k (1..V-1) is a fixed random 80-dim pattern held for 3 frames, with 3 noise
frames between tokens; an oracle reaches a CTC loss near 0. A per-frame MLP trained with
framewise cross-entropy learns it in ~200 Adam steps. With CTC (torch.nn.functional.ctc_loss,
whose gradient was checked against an autograd reference) it learns for V=5 and V=10 but sits
at ~log(V) per token for V=30 after 1500 steps, which matches the plateau of the real
transducer/CTC training (CTC ~4.85 per token with 256 pieces). Usage:

    python -m training.diagnostics.ctc_learnability --vocab 30 --steps 1500 [--framewise]
    python -m training.diagnostics.ctc_learnability --encoder-layers 10 --steps 300 --lr 5e-4

``--encoder-layers N`` replaces the MLP by the project's ConformerEncoder (N blocks) with a
linear head: the check behind docs/decisions/0008-pre-ln-blocks.md.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from server.model.config import EncoderConfig, FeatureConfig
from server.model.encoder import ConformerEncoder
from server.model.frames import SUBSAMPLING_FACTOR


def make_batch(patterns: torch.Tensor, batch: int, tokens: int, generator: torch.Generator):
    """features (B, 6U, 80), targets (B, U), framewise labels (B, 6U)."""
    vocab = patterns.shape[0]
    targets = torch.randint(1, vocab, (batch, tokens), generator=generator)
    features = torch.randn(batch, tokens * 6, patterns.shape[1], generator=generator) * 0.5
    labels = torch.zeros(batch, tokens * 6, dtype=torch.int64)
    for u in range(tokens):
        frames = slice(u * 6 + 1, u * 6 + 4)
        features[:, frames] += patterns[targets[:, u]][:, None]
        labels[:, frames] = targets[:, u : u + 1]
    return features, targets, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=30)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--framewise", action="store_true", help="train with per-frame cross-entropy instead")
    parser.add_argument("--encoder-layers", type=int, help="use a ConformerEncoder of this many blocks")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    patterns = torch.randn(args.vocab, 80) * 2
    batch, tokens = 8, 10
    model: nn.Module
    if args.encoder_layers is None:
        model = nn.Sequential(nn.Linear(80, 128), nn.ReLU(), nn.Linear(128, args.vocab))
        frames = tokens * 6
    else:
        encoder = ConformerEncoder(EncoderConfig(num_layers=args.encoder_layers, dropout=0.0), FeatureConfig())
        head = nn.Linear(encoder.config.d_model, args.vocab)
        model = nn.ModuleDict({"encoder": encoder, "head": head})  # one module for the optimizer
        frames = (tokens * 6 - 3) // SUBSAMPLING_FACTOR  # encoder frames after the conv subsampling
    optimizer = torch.optim.Adam(model.parameters(), args.lr)
    for step in range(1, args.steps + 1):
        features, targets, labels = make_batch(patterns, batch, tokens, generator)
        if args.encoder_layers is None:
            logits = model(features)
        else:
            # Stretch each input frame so tokens keep their length after subsampling.
            stretched = features.repeat_interleave(SUBSAMPLING_FACTOR, dim=1)
            encoded, _ = encoder(stretched, torch.full((batch,), stretched.shape[1]))
            logits = head(encoded)
            frames = logits.shape[1]
        if args.framewise:
            # Encoder frame j reads stretched frames 4j..4j+6, i.e. original frames j and j+1.
            labels = labels[:, : logits.shape[1]]
            loss = F.cross_entropy(logits.reshape(-1, args.vocab), labels.reshape(-1))
        else:
            log_probs = logits.log_softmax(-1).transpose(0, 1)
            lengths = torch.full((batch,), frames)
            loss = F.ctc_loss(log_probs, targets, lengths, torch.full((batch,), tokens), reduction="sum")
            loss = loss / (batch * tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, args.steps // 10) == 0:
            print(f"step {step}: loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
