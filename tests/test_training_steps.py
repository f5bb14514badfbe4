"""A few optimiser steps of the real training loss on a tiny batch lower the loss."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from server.model.checkpoint import load_model
from training.batching import Batch, spec_augment
from training.curve import curve_rows
from training.objective import sample_mask, transducer_loss
from training.schedule import learning_rate, training_batches


def test_few_steps_lower_the_loss(random_model_dir: Path) -> None:
    torch.manual_seed(0)
    model = load_model(random_model_dir).train()
    texts = ["please call me back", "the blue one", "turn left at the next light"]
    tokens = [model.tokenizer.encode(t) for t in texts]
    targets = torch.zeros(len(texts), max(map(len, tokens)), dtype=torch.int64)
    for row, ids in enumerate(tokens):
        targets[row, : len(ids)] = torch.tensor(ids)
    lengths = torch.tensor([150, 120, 90])
    batch = Batch(torch.randn(3, 150, 80), lengths, targets, torch.tensor([len(t) for t in tokens]), texts)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mask = (model.config.encoder.chunk_size, model.config.encoder.left_chunks, model.config.encoder.right_context)
    losses = []
    for _ in range(25):
        loss = transducer_loss(model, batch, mask).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_dynamic_chunk_masks_cover_serving_and_full_context(random_model_dir: Path) -> None:
    config = load_model(random_model_dir).config.encoder
    rng = random.Random(0)
    masks = [sample_mask(rng, config, 0.5) for _ in range(200)]
    serving = (config.chunk_size, config.left_chunks, config.right_context)
    assert 70 < sum(m == serving for m in masks) < 130
    assert any(m[0] is None for m in masks)
    assert all(m[0] is None or m[2] <= m[0] for m in masks)


def test_learning_rate_warms_up_then_decays() -> None:
    assert learning_rate(1, 1e-3, 100) < learning_rate(50, 1e-3, 100) < learning_rate(100, 1e-3, 100)
    assert learning_rate(400, 1e-3, 100) == 0.5e-3
    held = learning_rate(400, 1e-3, 100, hold_after=400)
    assert learning_rate(1600, 1e-3, 100, hold_after=400) == held == 0.5e-3
    assert learning_rate(1600, 1e-3, 100, hold_after=400, cooldown=(2000, 800)) == 0.25e-3
    assert learning_rate(2000, 1e-3, 100, hold_after=400, cooldown=(2000, 800)) == 0.0


def test_spec_augment_masks_only_inside_each_utterance() -> None:
    features = torch.randn(2, 300, 80)
    original = features.clone()
    spec_augment(features, torch.tensor([300, 200]), torch.Generator().manual_seed(0))
    assert not torch.equal(features[:, :200], original[:, :200])
    assert torch.equal(features[1, 200:], original[1, 200:])


def test_auxiliary_ctc_loss_adds_a_trainable_term(random_model_dir: Path) -> None:
    torch.manual_seed(0)
    model = load_model(random_model_dir).train()
    model.encoder.dropout.p = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ids = model.tokenizer.encode("the blue one")
    batch = Batch(torch.randn(1, 120, 80), torch.tensor([120]), torch.tensor([ids]), torch.tensor([len(ids)]), [])
    head = torch.nn.Linear(model.config.encoder.d_model, model.config.tokenizer.vocab_size)
    mask = (None, None, 0)
    plain = transducer_loss(model, batch, mask).total
    with_ctc = transducer_loss(model, batch, mask, head, 0.3).total
    assert with_ctc.item() > plain.item()
    with_ctc.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_bf16_autocast_loss_matches_float32(random_model_dir: Path) -> None:
    """``fit --bf16`` trains on the same objective: the loss moves by well under 1%."""
    torch.manual_seed(0)
    model = load_model(random_model_dir).eval()  # no dropout: both passes see the same network
    ids = model.tokenizer.encode("turn left at the next light")
    batch = Batch(torch.randn(1, 200, 80), torch.tensor([200]), torch.tensor([ids]), torch.tensor([len(ids)]), [])
    head = torch.nn.Linear(model.config.encoder.d_model, model.config.tokenizer.vocab_size)
    mask = (8, 8, 2)
    exact = transducer_loss(model, batch, mask, head, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = transducer_loss(model, batch, mask, head, 0.3)
    assert fast.total.dtype == torch.float32
    assert abs(fast.rnnt.item() - exact.rnnt.item()) < 0.01 * exact.rnnt.item()
    assert abs(fast.ctc.item() - exact.ctc.item()) < 0.01 * exact.ctc.item()


def test_short_first_curriculum_then_whole_epochs() -> None:
    lengths = [100, 300, 200, 500, 150] * 20
    info = {"step": 0, "epoch": 0}
    batches = training_batches(lengths, 1000, 4, 200, random.Random(0), info)
    longest = []
    for _ in range(40):
        longest.append(max(lengths[i] for i in next(batches)))
        info["step"] += 1
    assert max(longest[:4]) <= 200, longest
    assert max(longest[4:]) == 500
    assert info["epoch"] >= 1


def test_curve_uses_the_latest_record_of_a_step_and_the_last_validation() -> None:
    records = [{"step": s, "rnnt": 2.0, "ctc": 3.0} for s in range(1, 5)]
    records[1]["valid_wer"] = 0.9
    records += [{"step": 3, "rnnt": 1.0, "ctc": 1.0}, {"step": 4, "rnnt": 1.0, "ctc": 1.0, "valid_wer": 0.5}]
    early, late = curve_rows(records, at=[1, 3], window=2)
    assert (early["rnnt"], early["ctc"], early["valid_wer"]) == (2.0, 3.0, 0.9)
    assert (late["first"], late["last"], late["rnnt"], late["valid_wer"]) == (3, 4, 1.0, 0.5)


def test_bf16_arithmetic_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    from training.fit import cpu_has_bf16_arithmetic

    with_flags = tmp_path / "with"
    with_flags.write_text("flags\t\t: fpu avx512f avx512_bf16 avx512vl\n")
    without = tmp_path / "without"
    without.write_text("flags\t\t: fpu avx2 avx512f avx512vl\n")
    assert cpu_has_bf16_arithmetic(with_flags)
    assert not cpu_has_bf16_arithmetic(without)
    assert not cpu_has_bf16_arithmetic(tmp_path / "missing")
