"""``asr-train fit``: train a streaming Conformer-Transducer with the RNN-T loss.

This module runs the training loop. The options are in ``training.fit_options``, the objective
(dynamic chunk masks, RNN-T + CTC) in ``training.objective``, batches and the learning-rate
schedule in ``training.schedule``, validation in ``training.validation`` and what EXP_DIR keeps
in ``training.trainer_state``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from server.model.checkpoint import load_model, read_config, save_model
from server.model.config import DecoderConfig, FeatureConfig, ModelConfig, TokenizerConfig
from server.model.frames import fbank_frames_per_second
from server.model.tokenizer import CHANNEL_CHANGE_PIECE, Tokenizer, train_tokenizer
from server.model.transducer import StreamingTransducer
from training.average import SNAPSHOTS_DIR
from training.batching import Batch, augment_prefix, collate, spec_augment
from training.features import ConcatenatedCaches, FeatureCache, build_feature_cache, training_features
from training.fit_options import add_arguments
from training.multilingual_model import (
    build_multilingual_model,
    feature_config,
    sample_language_weights,
    scratch_encoder_config,
    token_language_table,
)
from training.objective import sample_mask, transducer_loss
from training.prefix_cache import build_prefix_cache
from training.schedule import learning_rate, training_batches
from training.trainer_state import BEST, CTC_HEAD_FILE, LATEST, TRAINER_FILE, TrainerInfo, load_trainer, save_trainer
from training.validation import word_error_rate
from training.whisper.init_encoder import is_whisper_parameter

__all__ = ["add_arguments", "build_new_model", "run"]


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16_arithmetic(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has native bfloat16 matmuls (AVX512-BF16 or AMX-BF16), per /proc/cpuinfo.

    Without them torch emulates bf16 and autocast is far slower than float32: on session 11's
    AMD EPYC (no avx512_bf16) the forward pass of 16 x 3.75 s through four Whisper blocks took
    20-31 s in bf16 against 1.6-2.2 s in float32, one thread.
    """
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def build_new_model(
    args: argparse.Namespace, cache: FeatureCache | ConcatenatedCaches, exp_dir: Path
) -> StreamingTransducer:
    """Fresh model: tokenizer trained on the training texts, CMVN from the training features."""
    tokenizer_file = train_tokenizer(cache.texts, exp_dir / "tokenizer", args.vocab_size, [CHANNEL_CHANGE_PIECE])
    tokenizer = Tokenizer(tokenizer_file)
    config = ModelConfig(
        name=args.name,
        languages=sorted(set(cache.languages)),
        encoder=scratch_encoder_config(args),
        decoder=DecoderConfig(),
        tokenizer=TokenizerConfig(file=tokenizer_file.name, vocab_size=tokenizer.vocab_size),
    )
    model = StreamingTransducer(config, tokenizer)
    mean, std = cache.mean_std()
    model.encoder.get_buffer("feature_mean").copy_(torch.from_numpy(mean))
    model.encoder.get_buffer("feature_std").copy_(torch.from_numpy(std))
    return model


def _model_and_ctc_head(
    args: argparse.Namespace, train: FeatureCache | ConcatenatedCaches, device: str
) -> tuple[StreamingTransducer, nn.Linear]:
    """The model to train (resumed, initialized from a model, or new) and its CTC head, on ``device``."""
    exp_dir: Path = args.exp_dir
    if args.resume:
        model = load_model(exp_dir / LATEST)
    elif args.init_from:
        model = load_model(args.init_from)
    elif args.multilingual or args.whisper_encoder or len(set(train.languages)) > 1:
        model = build_multilingual_model(args, train.texts, train.languages, exp_dir)
    else:
        model = build_new_model(args, train, exp_dir)
    if (args.resume or args.init_from) and model.token_languages is not None:
        _extend_token_languages(model, train.texts, train.languages)
    if not model.config.multi_talker and any(p is not None and CHANNEL_CHANGE_PIECE in p for p in train.pieces):
        enable_multi_talker(model)
        print("t-SOT targets (<cc>) in the training data: the model becomes multi_talker")
    model.to(device).train()
    _freeze(model, args.freeze_encoder_layers)
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
    return model, ctc_head


def enable_multi_talker(model: StreamingTransducer) -> None:
    """Make ``model`` a t-SOT model in place: ``multi_talker: true`` and ``<cc>`` as its channel-change
    token (which its tokenizer must already reserve, as every tokenizer ``fit`` trains does)."""
    tokenizer = Tokenizer(model.tokenizer.model_file, CHANNEL_CHANGE_PIECE)  # raises if the piece is missing
    model.tokenizer = tokenizer
    model.config = model.config.model_copy(
        update={
            "multi_talker": True,
            "tokenizer": model.config.tokenizer.model_copy(update={"channel_change_token": CHANNEL_CHANGE_PIECE}),
        }
    )


def _extend_token_languages(model: StreamingTransducer, texts: list[str], languages: list[str]) -> None:
    """Add the tokens these training texts use to their languages' rows of a CMM model's table.

    A model continued on new data (a later synthesis snapshot) may meet a token its table does
    not give to the utterance's language; the output restriction would then mask a target.
    """
    assert model.token_languages is not None
    order = model.config.languages
    known = [(text, language) for text, language in zip(texts, languages, strict=True) if language in order]
    if known:
        table = token_language_table(model.tokenizer, [t for t, _ in known], [lang for _, lang in known], order)
        model.token_languages |= table.to(model.token_languages.device)


def _freeze(model: StreamingTransducer, num_layers: int) -> None:
    """Keep the encoder's stem and first ``num_layers`` blocks (with their language experts) as they
    are: a pretrained encoder's lower layers, and no backward pass through them on two cores."""
    if num_layers <= 0:
        return
    experts = [] if model.encoder.experts is None else list(model.encoder.experts)[:num_layers]
    frozen = [model.encoder.subsampling, *list(model.encoder.layers)[:num_layers], *experts]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        # No dropout in frozen blocks: they should compute in training what they compute served,
        # and Whisper was trained without it. With it (p 0.1) a CTC head fitting 80 utterances'
        # frozen features reached 4.6 per token in 50 steps, against 2.9 without.
        for dropout in (m for m in module.modules() if isinstance(m, nn.Dropout)):
            dropout.p = 0.0
    model.encoder.dropout.p = 0.0  # the stem's output, which the frozen blocks read


def _parameter_groups(model: StreamingTransducer, pretrained_scale: float, whisper_blocks: int) -> list[dict[str, Any]]:
    """The trainable parameters as optimizer groups: the new ones at the full rate, then (with a
    scale other than 1 and a Whisper encoder) Whisper's own weights at ``pretrained_scale`` of it:
    fine-tuned at the rate the new parts need, Whisper's top blocks lose what they carry (the
    layer probes of decision 0018)."""
    new: list[nn.Parameter] = []
    pretrained: list[nn.Parameter] = []
    whisper = model.config.encoder.frontend == "whisper" and pretrained_scale != 1.0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (pretrained if whisper and is_whisper_parameter(name, whisper_blocks) else new).append(parameter)
    groups: list[dict[str, Any]] = [{"params": new, "lr_scale": 1.0}]
    if pretrained:
        groups.append({"params": pretrained, "lr_scale": pretrained_scale})
    return groups


def _front_end(args: argparse.Namespace) -> FeatureConfig:
    """The features the model to train reads: its checkpoint's, or a new model's."""
    if args.resume:
        return read_config(args.exp_dir / LATEST).features
    if args.init_from:
        return read_config(args.init_from).features
    return feature_config(args)


def _set_learning_rate(args: argparse.Namespace, optimizer: torch.optim.Optimizer, step: int) -> float:
    """Set (and return) the learning rate of ``step`` on every parameter group."""
    cooldown_end = args.cooldown_end_step or args.max_steps
    cooldown = (cooldown_end + args.schedule_offset, args.cooldown_steps) if args.cooldown_steps else None
    lr = learning_rate(step + args.schedule_offset, args.lr, args.warmup_steps, args.hold_lr_after, cooldown)
    if args.schedule_offset:
        lr *= min(1.0, step / 100)  # fresh optimizer moments: ramp up again briefly
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def _training_batch(
    train: FeatureCache | ConcatenatedCaches,
    indices: list[int],
    model: StreamingTransducer,
    augment: bool,
    generator: torch.Generator,
    device: str,
    language_weights: Callable[[list[str]], torch.Tensor] | None = None,
    encoded_layers: int = 0,
) -> Batch:
    """The batch of these utterances on ``device``, SpecAugmented (on the CPU, by ``generator``) if ``augment``;
    ``language_weights`` draws a CMM model's (B, K) language masks from the utterances' languages.

    ``encoded_layers`` N > 0: ``train`` holds the frozen first N blocks' output (a prefix cache),
    which gets SpecAugment's time masks in place of the features'."""
    batch = collate(train, indices, model.tokenizer)
    if augment and encoded_layers:
        augment_prefix(batch.features, batch.feature_lengths, generator)
    elif augment:
        spec_augment(batch.features, batch.feature_lengths, generator)
    weights = None if language_weights is None else language_weights(batch.languages).to(device)
    return Batch(
        batch.features.to(device),
        batch.feature_lengths.to(device),
        batch.targets.to(device),
        batch.target_lengths.to(device),
        batch.texts,
        batch.languages,
        weights,
        encoded_layers,
    )


def _save_latest(
    exp_dir: Path, model: StreamingTransducer, ctc_head: nn.Linear, optimizer: torch.optim.Optimizer, info: TrainerInfo
) -> None:
    """EXP_DIR/latest: the model in float32, the optimizer state and the CTC head (what --resume reads)."""
    save_model(model, exp_dir / LATEST, half=False)
    save_trainer(exp_dir / LATEST, optimizer, info)
    save_file(ctc_head.state_dict(), str(exp_dir / LATEST / CTC_HEAD_FILE))


def run(args: argparse.Namespace) -> int:
    """``asr-train fit``: train until --max-steps or --max-minutes, validating and saving on the way."""
    if args.cache_frozen_prefix and args.freeze_encoder_layers <= 0:
        raise SystemExit("asr-train fit: --cache-frozen-prefix needs --freeze-encoder-layers N > 0 (what it caches)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    exp_dir: Path = args.exp_dir
    exp_dir.mkdir(parents=True, exist_ok=True)
    front_end = _front_end(args)
    train = training_features(args.train_manifest, exp_dir / "features-train", args.jobs, args.speed_perturb, front_end)
    valid = FeatureCache(
        build_feature_cache(args.valid_manifest, exp_dir / "features-valid", args.jobs, features=front_end)
    )
    valid_indices = list(range(min(len(valid), args.valid_utterances)))

    device = _device()
    if args.bf16 and device == "cpu" and not cpu_has_bf16_arithmetic():
        print("warning: --bf16 on a CPU without AVX512-BF16/AMX: bfloat16 is emulated and ~10x slower; drop --bf16")
    model, ctc_head = _model_and_ctc_head(args, train, device)
    whisper_blocks = args.whisper_layers or model.config.encoder.num_layers - args.new_layers
    groups = _parameter_groups(model, args.pretrained_lr_scale, whisper_blocks)
    if model.ctc_head is None:
        groups[0]["params"] += list(ctc_head.parameters())
    parameters = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=1e-3, betas=(0.9, 0.98))
    info: TrainerInfo = {"step": 0, "best_wer": 1.0, "epoch": 0, "hours_seen": 0.0}
    if args.resume:
        info = load_trainer(exp_dir / LATEST, optimizer)
    print(f"model: {model.num_parameters / 1e6:.2f}M parameters, {len(train)} training utterances, device {device}")
    # What batches are read from: the features, or the frozen blocks' output computed once from them.
    encoded_layers = args.freeze_encoder_layers if args.cache_frozen_prefix else 0
    inputs = build_prefix_cache(model, train, encoded_layers, exp_dir / "prefix-train") if encoded_layers else train

    # Seeded by the step too: a resumed run seeded as at its start would draw the same batches
    # (and masks) again from every restart, as runs before this fix did (training-status.md).
    run_seed = args.seed * 1_000_003 + info["step"]
    rng = random.Random(run_seed)
    generator = torch.Generator().manual_seed(run_seed)
    log = (exp_dir / "log.jsonl").open("a")
    started = last_save = time.monotonic()
    progress = tqdm(initial=info["step"], desc="fit", dynamic_ncols=True)
    # Fbank frames, whatever the batches read: --max-batch-frames and --short-first-seconds count
    # them, so a prefix cache (utterance for utterance the same) gets the same batches.
    lengths = [train.length(i) for i in range(len(train))]
    frames_per_second = fbank_frames_per_second(model.config.features)
    short_first_frames = round(args.short_first_seconds * frames_per_second)
    masks = None
    if model.token_languages is not None:
        order = model.config.languages

        def masks(languages: list[str]) -> torch.Tensor:
            return sample_language_weights(languages, order, rng, args.language_other_prob, args.language_all_prob)

    for indices in training_batches(
        lengths, args.max_batch_frames, args.short_first_steps, short_first_frames, rng, info
    ):
        step = info["step"] + 1
        augment = step > args.spec_augment_after
        batch = _training_batch(inputs, indices, model, augment, generator, device, masks, encoded_layers)
        lr = _set_learning_rate(args, optimizer, step)
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
        info["hours_seen"] += sum(lengths[i] for i in indices) / frames_per_second / 3600
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
            _save_latest(exp_dir, model, ctc_head, optimizer, info)
            last_save = time.monotonic()
        if stop:
            break
    progress.close()
    return 0
