"""Which encoder layers carry the speech? Linear CTC probes of a model's frozen encoder layers.

For the first ``--utterances`` utterances of a feature cache (``asr-train fit``'s
``EXP_DIR/features-train``), runs the model's encoder once (no gradient, its serving chunk mask
or ``--full-context``) and keeps every block's output; then trains, for each layer asked, a
LayerNorm + linear CTC head alone (Adam, ``--steps`` steps of 16 utterances) and reports its
training loss and the greedy character error rate on the held-back last ``--test`` utterances.
A layer whose probe stays at the unigram level (about 4.9 per token for 320 pieces) has lost
what the pretrained encoder knew; decision 0018 used it to find that Whisper's blocks need
their absolute positions. Usage:

    python -m training.diagnostics.layer_probe --model EXP_DIR/latest \
        --features EXP_DIR/features-train [--layers 0 2 4 6] [--steps 300] [--full-context]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import jiwer
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from server.model.checkpoint import load_model
from server.model.encoder import ConformerEncoder, chunk_attention_mask
from training.features import FeatureCache


def layer_outputs(encoder: ConformerEncoder, features: np.ndarray, full_context: bool) -> list[Tensor]:
    """The stem's output and every block's, each (T', D), for one utterance (T, F)."""
    x = encoder._embed(torch.from_numpy(np.asarray(features, dtype=np.float32))[None])
    frames = x.shape[1]
    position = torch.arange(frames)
    distance = position[None, :] - position[:, None]
    c = encoder.config
    if full_context:
        first = rest = torch.ones(1, frames, frames, dtype=torch.bool)
    else:
        first = chunk_attention_mask(frames, c.chunk_size, c.left_chunks, c.right_context, x.device)[None]
        rest = chunk_attention_mask(frames, c.chunk_size, c.left_chunks, 0, x.device)[None]
    outputs = [x[0]]
    for index, layer in enumerate(encoder.layers):
        x, _, _, _ = layer(x, first if index == 0 else rest, distance, frames)
        outputs.append(x[0])
    return outputs


def _batch(items: list[tuple[Tensor, list[int]]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    lengths = torch.tensor([x.shape[0] for x, _ in items])
    x = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for row, (frames, _) in enumerate(items):
        x[row, : frames.shape[0]] = frames
    targets = torch.cat([torch.tensor(t, dtype=torch.int64) for _, t in items])
    return x, lengths, targets, torch.tensor([len(t) for _, t in items])


def probe(
    train: list[tuple[Tensor, list[int]]],
    test: list[tuple[Tensor, list[int]]],
    vocab: int,
    blank: int,
    steps: int,
    decode: object,
) -> tuple[float, float]:
    """(last training CTC loss per token, test CER) of a LayerNorm + linear head on these frames."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.LayerNorm(train[0][0].shape[1]), nn.Linear(train[0][0].shape[1], vocab))
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    rng = random.Random(0)
    loss = torch.zeros(())
    for _ in range(steps):
        x, lengths, targets, target_lengths = _batch(rng.sample(train, min(16, len(train))))
        log_probs = head(x).log_softmax(-1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=blank, reduction="sum", zero_infinity=True)
        loss = loss / target_lengths.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    references, hypotheses = [], []
    with torch.no_grad():
        for frames, tokens in test:
            best = head(frames).argmax(-1).tolist()
            collapsed = [t for i, t in enumerate(best) if t != blank and (i == 0 or t != best[i - 1])]
            references.append(decode(tokens))  # type: ignore[operator]
            hypotheses.append(decode(collapsed))  # type: ignore[operator]
    return float(loss), float(jiwer.cer(references, hypotheses))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model directory (e.g. EXP_DIR/latest)")
    parser.add_argument("--features", type=Path, required=True, help="a feature cache of that model's front end")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 2, 4, 6], help="0: the stem's output")
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--full-context", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model).eval()
    cache = FeatureCache(args.features)
    tokenizer = model.tokenizer
    with torch.no_grad():
        data = [
            (layer_outputs(model.encoder, cache[i], args.full_context), tokenizer.encode(cache.texts[i]))
            for i in range(min(args.utterances, len(cache)))
        ]
    for layer in args.layers:
        items = [(outputs[layer], tokens) for outputs, tokens in data]
        train, test = items[: -args.test], items[-args.test :]
        loss, cer = probe(train, test, tokenizer.vocab_size, tokenizer.blank_id, args.steps, tokenizer.decode)
        print(f"layer {layer}: probe CTC loss {loss:.3f} per token, test CER {cer:.3f}", flush=True)


if __name__ == "__main__":
    main()
