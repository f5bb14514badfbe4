"""``asr-train fit``: train a streaming Conformer-Transducer with the RNN-T loss.

Dynamic chunk training: each batch draws its attention mask — the serving mask most of the
time, otherwise a random chunk size / history or full context — so one model serves its
streaming configuration and also decodes offline (full context) for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jiwer
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from server.model.checkpoint import load_model, save_model
from server.model.config import DecoderConfig, EncoderConfig, ModelConfig, TokenizerConfig
from server.model.tokenizer import CHANNEL_CHANGE_PIECE, Tokenizer, train_tokenizer
from server.model.transducer import StreamingTransducer
from training.average import SNAPSHOTS_DIR
from training.batching import Batch, bucketed_batches, collate, spec_augment
from training.features import ConcatenatedCaches, FeatureCache, build_feature_cache, training_features
from training.rnnt_loss import rnnt_loss

LATEST, BEST = "latest", "best"
TRAINER_FILE = "trainer.json"  # step, hours seen, optimizer settings
CTC_HEAD_FILE = "ctc_head.safetensors"  # the auxiliary CTC head, beside the optimizer state (bundle attaches it)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--train-manifest",
        type=Path,
        nargs="+",
        required=True,
        help="one or more manifests, trained on as one set (each gets its own feature cache)",
    )
    parser.add_argument("--valid-manifest", type=Path, required=True)
    parser.add_argument("--exp-dir", type=Path, required=True, help="checkpoints and logs go here")
    parser.add_argument("--name", default="en-small", help="model name written into config.json")
    parser.add_argument("--init-from", type=Path, help="start from this model directory (weights, config, tokenizer)")
    parser.add_argument("--resume", action="store_true", help="continue EXP_DIR/latest with its optimizer state")
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=144)
    parser.add_argument("--num-layers", type=int, default=10)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--ffn-dim", type=int, default=576)
    parser.add_argument("--chunk-size", type=int, default=8, help="encoder frames (40 ms) per chunk")
    parser.add_argument("--left-chunks", type=int, default=8)
    parser.add_argument("--right-context", type=int, default=2)
    parser.add_argument("--max-batch-frames", type=int, default=12000, help="fbank frames (10 ms) per batch")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup-steps", type=int, default=600)
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--hold-lr-after", type=int, help="keep the learning rate of this step from then on")
    parser.add_argument(
        "--cooldown-steps",
        type=int,
        default=0,
        help="ramp the learning rate linearly to 0 over the N steps before --cooldown-end-step",
    )
    parser.add_argument(
        "--cooldown-end-step",
        type=int,
        help="step at which the cool-down reaches 0 (default: --max-steps); a run may stop earlier",
    )
    parser.add_argument("--max-minutes", type=float, default=1e9, help="stop (and save) after this long")
    parser.add_argument(
        "--serve-mask-prob",
        type=float,
        default=0.6,
        help="share of batches with the serving mask; the rest: random chunks or full context",
    )
    parser.add_argument("--spec-augment-after", type=int, default=1000, help="step from which SpecAugment is on")
    parser.add_argument("--ctc-weight", type=float, default=0.3, help="weight of the auxiliary CTC loss (0: off)")
    parser.add_argument(
        "--blank-bias-init",
        type=float,
        default=0.0,
        help="initial output bias of blank in a new model's joiner and CTC head (see docs)",
    )
    parser.add_argument(
        "--schedule-offset",
        type=int,
        default=0,
        help="with --init-from: continue the LR schedule from this step (re-warm-up 100 steps)",
    )
    parser.add_argument(
        "--short-first-steps",
        type=int,
        default=0,
        help="curriculum: for this many steps train only on utterances up to --short-first-seconds",
    )
    parser.add_argument("--short-first-seconds", type=float, default=2.5)
    parser.add_argument("--valid-every", type=int, default=500)
    parser.add_argument("--valid-utterances", type=int, default=200)
    parser.add_argument("--save-every-minutes", type=float, default=10)
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=0,
        help="also keep the model every N steps in EXP_DIR/snapshots (for asr-train average; 0: off)",
    )
    parser.add_argument("--snapshot-after", type=int, default=0, help="keep snapshots only after this step")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast for the forward pass (1.5x per step on an AVX512-BF16 CPU: "
        "benchmarks/train_step_speed.py); the losses are computed in float32",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the feature cache")
    parser.add_argument(
        "--speed-perturb",
        type=float,
        nargs="*",
        default=[],
        help="also train on copies of the data at these speeds (e.g. 0.9 1.1; each is cached once)",
    )
    parser.add_argument("--seed", type=int, default=0)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_new_model(
    args: argparse.Namespace, cache: FeatureCache | ConcatenatedCaches, exp_dir: Path
) -> StreamingTransducer:
    """Fresh model: tokenizer trained on the training texts, CMVN from the training features."""
    tokenizer_file = train_tokenizer(cache.texts, exp_dir / "tokenizer", args.vocab_size, [CHANNEL_CHANGE_PIECE])
    tokenizer = Tokenizer(tokenizer_file)
    config = ModelConfig(
        name=args.name,
        languages=sorted(set(cache.languages)),
        encoder=EncoderConfig(
            d_model=args.d_model,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            ffn_dim=args.ffn_dim,
            chunk_size=args.chunk_size,
            left_chunks=args.left_chunks,
            right_context=args.right_context,
        ),
        decoder=DecoderConfig(),
        tokenizer=TokenizerConfig(file=tokenizer_file.name, vocab_size=tokenizer.vocab_size),
    )
    model = StreamingTransducer(config, tokenizer)
    mean, std = cache.mean_std()
    model.encoder.feature_mean.copy_(torch.from_numpy(mean))
    model.encoder.feature_std.copy_(torch.from_numpy(std))
    return model


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
    """
    chunk, left, right = mask
    encoder_out, lengths = model.encoder(
        batch.features, batch.feature_lengths, chunk_size=chunk, left_chunks=left, right_context=right
    )
    decoder_out = model.decoder.training_input(batch.targets)  # (B, U+1, E)
    logits = model.joiner(encoder_out[:, :, None], decoder_out[:, None])  # (B, T', U+1, V)
    blank = model.tokenizer.blank_id
    rnnt = rnnt_loss(logits, batch.targets, lengths, batch.target_lengths, blank=blank)
    ctc = torch.zeros((), device=rnnt.device)
    if ctc_head is not None and ctc_weight > 0:
        log_probs = ctc_head(encoder_out).float().log_softmax(dim=-1).transpose(0, 1)  # (T', B, V)
        ctc = F.ctc_loss(
            log_probs, batch.targets, lengths, batch.target_lengths, blank=blank, reduction="sum", zero_infinity=True
        ) / batch.target_lengths.sum().clamp(min=1)
    return Losses(rnnt + ctc_weight * ctc, rnnt, ctc)


def word_error_rate(
    model: StreamingTransducer,
    cache: FeatureCache,
    indices: list[int],
    streaming: bool = True,
    batch_frames: int = 30000,
) -> float:
    """Greedy WER on cached features (streaming mask or full context)."""
    from training.text_normalize import normalize_text

    was_training = model.training
    model.eval()
    references, hypotheses = [], []
    device = model.encoder.feature_mean.device
    with torch.inference_mode():
        for chunk in bucketed_batches([cache.length(i) for i in indices], batch_frames, random.Random(0)):
            batch = collate(cache, [indices[i] for i in chunk], model.tokenizer)
            tokens = model.transcribe_batch(batch.features.to(device), batch.feature_lengths.to(device), streaming)
            hypotheses += [normalize_text(model.tokenizer.decode([t for t, _ in hyp])) for hyp in tokens]
            references += [normalize_text(text) for text in batch.texts]
    model.train(was_training)
    return jiwer.wer(references, [h or "<empty>" for h in hypotheses])


def _save_trainer(directory: Path, optimizer: torch.optim.Optimizer, info: dict) -> None:
    """Optimizer state as safetensors (no pickle) plus a JSON of the scalars."""
    state = optimizer.state_dict()
    tensors = {
        f"{param}.{key}": value.contiguous() for param, entry in state["state"].items() for key, value in entry.items()
    }
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / TRAINER_FILE).write_text(json.dumps({**info, "param_groups": state["param_groups"]}, indent=1))


def _load_trainer(directory: Path, optimizer: torch.optim.Optimizer) -> dict:
    info = json.loads((directory / TRAINER_FILE).read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in load_file(str(directory / "optimizer.safetensors")).items():
        param, key = name.split(".", 1)
        state.setdefault(int(param), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": info.pop("param_groups")})
    return info


def training_batches(
    lengths: list[int],
    max_batch_frames: int,
    short_first_steps: int,
    short_first_frames: int,
    rng: random.Random,
    info: dict,
) -> Iterator[list[int]]:
    """Endless batches of utterance indices, counting epochs in ``info["epoch"]``.

    ``lengths``: fbank frames per utterance. Short-first curriculum (SortaGrad, Amodei et al.
    2016): until step ``short_first_steps`` only utterances of at most ``short_first_frames`` are
    drawn. With few tokens per utterance the alignment signal is sharp, which is what gets
    CTC/RNN-T off the all-blank plateau.
    """
    short = [i for i, n in enumerate(lengths) if n <= short_first_frames]
    while info["step"] < short_first_steps and short:
        for batch in bucketed_batches([lengths[i] for i in short], max_batch_frames, rng):
            if info["step"] >= short_first_steps:
                break
            yield [short[i] for i in batch]
    while True:
        yield from bucketed_batches(lengths, max_batch_frames, rng)
        info["epoch"] += 1


def learning_rate(
    step: int, peak: float, warmup: int, hold_after: int | None = None, cooldown: tuple[int, int] | None = None
) -> float:
    """Linear warm-up, then inverse square-root decay.

    ``hold_after``: from this step on, the rate stays where the decay had brought it.
    ``cooldown`` (last_step, steps): the final ``steps`` before ``last_step`` ramp the rate
    linearly down to 0 (warmup-stable-decay; a short run gains most of its final accuracy there).
    """
    step = max(step, 1)
    decay_step = step if hold_after is None else min(step, max(hold_after, warmup))
    rate = peak * min(step / warmup, math.sqrt(warmup / decay_step))
    if cooldown is not None:
        last_step, steps = cooldown
        rate *= min(1.0, max(0.0, (last_step - step) / steps))
    return rate


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    exp_dir: Path = args.exp_dir
    exp_dir.mkdir(parents=True, exist_ok=True)
    train = training_features(args.train_manifest, exp_dir / "features-train", args.jobs, args.speed_perturb)
    valid = FeatureCache(build_feature_cache(args.valid_manifest, exp_dir / "features-valid", args.jobs))
    valid_indices = list(range(min(len(valid), args.valid_utterances)))

    if args.resume:
        model = load_model(exp_dir / LATEST)
    elif args.init_from:
        model = load_model(args.init_from)
    else:
        model = build_new_model(args, train, exp_dir)
    device = _device()
    model.to(device).train()
    # A bundled model keeps its CTC head (to rescore finals); otherwise the head lives only here.
    ctc_head = model.ctc_head
    if ctc_head is None:
        ctc_head = nn.Linear(model.config.encoder.d_model, model.config.tokenizer.vocab_size).to(device)
    ctc_head_file = exp_dir / LATEST / CTC_HEAD_FILE
    if args.resume and ctc_head_file.is_file():
        ctc_head.load_state_dict(load_file(str(ctc_head_file)))
    if not (args.resume or args.init_from) and args.blank_bias_init:
        # An experiment against the all-blank plateau: start with blank unlikely
        # (docs/training-status.md).
        with torch.no_grad():
            model.joiner.output.bias[model.tokenizer.blank_id] = args.blank_bias_init
            ctc_head.bias[model.tokenizer.blank_id] = args.blank_bias_init
    parameters = list(model.parameters()) + ([] if model.ctc_head is not None else list(ctc_head.parameters()))
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-3, betas=(0.9, 0.98))
    info = {"step": 0, "best_wer": 1.0, "epoch": 0, "hours_seen": 0.0}
    if args.resume:
        info = _load_trainer(exp_dir / LATEST, optimizer)
    print(f"model: {model.num_parameters / 1e6:.2f}M parameters, {len(train)} training utterances, device {device}")

    # Seeded by the step too: a resumed run seeded as at its start would draw the same batches
    # (and masks) again from every restart, as runs before this fix did (training-status.md).
    run_seed = args.seed * 1_000_003 + info["step"]
    rng = random.Random(run_seed)
    generator = torch.Generator().manual_seed(run_seed)
    log = (exp_dir / "log.jsonl").open("a")
    started = last_save = time.monotonic()
    progress = tqdm(initial=info["step"], desc="fit", dynamic_ncols=True)
    lengths = [train.length(i) for i in range(len(train))]
    short_first_frames = round(args.short_first_seconds * 100)  # 10 ms fbank frames
    for indices in training_batches(
        lengths, args.max_batch_frames, args.short_first_steps, short_first_frames, rng, info
    ):
        step = info["step"] + 1
        batch = collate(train, indices, model.tokenizer)
        if step > args.spec_augment_after:
            spec_augment(batch.features, batch.feature_lengths, generator)
        batch = Batch(
            batch.features.to(device),
            batch.feature_lengths.to(device),
            batch.targets.to(device),
            batch.target_lengths.to(device),
            batch.texts,
        )
        cooldown_end = args.cooldown_end_step or args.max_steps
        cooldown = (cooldown_end + args.schedule_offset, args.cooldown_steps) if args.cooldown_steps else None
        lr = learning_rate(step + args.schedule_offset, args.lr, args.warmup_steps, args.hold_lr_after, cooldown)
        if args.schedule_offset:
            lr *= min(1.0, step / 100)  # fresh optimizer moments: ramp up again briefly
        for group in optimizer.param_groups:
            group["lr"] = lr
        mask = sample_mask(rng, model.config.encoder, args.serve_mask_prob)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.bf16):
            losses = transducer_loss(model, batch, mask, ctc_head, args.ctc_weight)
        loss = losses.total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, 5.0)
        if torch.isfinite(grad_norm):
            optimizer.step()
        info["step"] = step
        info["hours_seen"] += float(batch.feature_lengths.sum()) / 100 / 3600
        progress.update(1)
        progress.set_postfix(
            loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", hours=f"{info['hours_seen']:.1f}"
        )
        record = {
            "step": step,
            "loss": round(loss.item(), 4),
            "rnnt": round(losses.rnnt.item(), 4),
            "ctc": round(losses.ctc.item(), 4),
            "grad_norm": round(float(grad_norm), 3),
            "lr": lr,
        }
        if step % args.valid_every == 0:
            wer = word_error_rate(model, valid, valid_indices)
            record["valid_wer"] = round(wer, 4)
            tqdm.write(f"step {step}: valid streaming WER {wer:.2%}")
            if wer < info["best_wer"]:
                info["best_wer"] = wer
                save_model(model, exp_dir / BEST)
                (exp_dir / BEST / TRAINER_FILE).write_text(json.dumps(info, indent=1))
        log.write(json.dumps(record) + "\n")
        log.flush()
        if args.snapshot_every and step > args.snapshot_after and step % args.snapshot_every == 0:
            snapshot = save_model(model, exp_dir / SNAPSHOTS_DIR / f"step-{step:07d}", half=False)
            if model.ctc_head is None:  # so that asr-train bundle finds the head of a snapshot too
                save_file(ctc_head.state_dict(), str(snapshot / CTC_HEAD_FILE))
        elapsed = time.monotonic() - started
        stop = step >= args.max_steps or elapsed > args.max_minutes * 60
        if stop or time.monotonic() - last_save > args.save_every_minutes * 60:
            save_model(model, exp_dir / LATEST, half=False)
            _save_trainer(exp_dir / LATEST, optimizer, info)
            save_file(ctc_head.state_dict(), str(exp_dir / LATEST / CTC_HEAD_FILE))
            last_save = time.monotonic()
        if stop:
            break
    progress.close()
    return 0
