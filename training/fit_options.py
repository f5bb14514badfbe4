"""The command-line options of ``asr-train fit``, in groups: data, model, schedule, curriculum, checkpoints, run."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """All options of ``asr-train fit``."""
    _data_options(parser.add_argument_group("data"))
    _model_options(parser.add_argument_group("model (a new one; --init-from and --resume bring their own)"))
    _multilingual_options(parser.add_argument_group("multilingual (CMM) and pretrained encoder"))
    _schedule_options(parser.add_argument_group("learning rate"))
    _objective_options(parser.add_argument_group("objective and curriculum"))
    _checkpoint_options(parser.add_argument_group("validation and checkpoints"))
    _run_options(parser.add_argument_group("run"))


def _data_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--train-manifest",
        type=Path,
        nargs="+",
        required=True,
        help="one or more manifests, trained on as one set (each gets its own feature cache)",
    )
    group.add_argument("--valid-manifest", type=Path, required=True)
    group.add_argument("--exp-dir", type=Path, required=True, help="checkpoints and logs go here")
    group.add_argument(
        "--speed-perturb",
        type=float,
        nargs="*",
        default=[],
        help="also train on copies of the data at these speeds (e.g. 0.9 1.1; each is cached once)",
    )
    group.add_argument("--max-batch-frames", type=int, default=12000, help="fbank frames (10 ms) per batch")


def _multilingual_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--multilingual",
        action="store_true",
        help="a new model is a CMM model (language experts, token-language table), also on one language; "
        "implied by training data in several languages or --whisper-encoder",
    )
    group.add_argument(
        "--whisper-encoder", type=Path, help="initialise the encoder from this asr-train convert-whisper output"
    )
    group.add_argument(
        "--whisper-ffn-dim", type=int, default=1024, help="keep this many hidden units of Whisper's FFNs (FLOPs)"
    )
    group.add_argument(
        "--freeze-encoder-layers",
        type=int,
        default=0,
        help="keep the stem and the first N encoder blocks frozen (with a Whisper encoder their new parts, "
        "relative positions included, stay at zero)",
    )
    group.add_argument(
        "--cache-frozen-prefix",
        action="store_true",
        help="with --freeze-encoder-layers N > 0: compute the stem and the N frozen blocks once per training "
        "utterance (serving mask, float16, in EXP_DIR/prefix-train, rebuilt when those weights change) and "
        "train the blocks above on that; SpecAugment then masks time spans of the cached frames instead of "
        "the features, and the frozen blocks see the serving mask in every batch",
    )
    group.add_argument("--whisper-layers", type=int, help="use only Whisper's first N blocks (default: all of them)")
    group.add_argument(
        "--new-layers", type=int, default=0, help="Conformer blocks of the same shape, randomly initialised, on top"
    )
    group.add_argument(
        "--pretrained-lr-scale",
        type=float,
        default=1.0,
        help="learning rate of the trained Whisper weights (attention, Whisper's FFN, stem) relative to "
        "--lr; the new parts (macaron FFN, convolution, experts, decoder, joiner, CTC head) get --lr",
    )
    group.add_argument(
        "--language-other-prob", type=float, default=0.25, help="chance each other language joins a training mask"
    )
    group.add_argument("--language-all-prob", type=float, default=0.2, help="chance a training mask holds all")


def _model_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--name", default="en-small", help="model name written into config.json")
    group.add_argument("--init-from", type=Path, help="start from this model directory (weights, config, tokenizer)")
    group.add_argument("--resume", action="store_true", help="continue EXP_DIR/latest with its optimizer state")
    group.add_argument("--vocab-size", type=int, default=256)
    group.add_argument("--d-model", type=int, default=144)
    group.add_argument("--num-layers", type=int, default=10)
    group.add_argument("--num-heads", type=int, default=4)
    group.add_argument("--ffn-dim", type=int, default=576)
    group.add_argument("--chunk-size", type=int, default=8, help="encoder frames (40 ms) per chunk")
    group.add_argument("--left-chunks", type=int, default=8)
    group.add_argument("--right-context", type=int, default=2)
    group.add_argument(
        "--blank-bias-init",
        type=float,
        default=0.0,
        help="initial output bias of blank in a new model's joiner and CTC head (see docs)",
    )


def _schedule_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--lr", type=float, default=1.5e-3)
    group.add_argument("--warmup-steps", type=int, default=600)
    group.add_argument("--max-steps", type=int, default=1_000_000)
    group.add_argument("--hold-lr-after", type=int, help="keep the learning rate of this step from then on")
    group.add_argument(
        "--cooldown-steps",
        type=int,
        default=0,
        help="ramp the learning rate linearly to 0 over the N steps before --cooldown-end-step",
    )
    group.add_argument(
        "--cooldown-end-step",
        type=int,
        help="step at which the cool-down reaches 0 (default: --max-steps); a run may stop earlier",
    )
    group.add_argument(
        "--schedule-offset",
        type=int,
        default=0,
        help="with --init-from: continue the LR schedule from this step (re-warm-up 100 steps)",
    )


def _objective_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--serve-mask-prob",
        type=float,
        default=0.6,
        help="share of batches with the serving mask; the rest: random chunks or full context",
    )
    group.add_argument("--spec-augment-after", type=int, default=1000, help="step from which SpecAugment is on")
    group.add_argument("--ctc-weight", type=float, default=0.3, help="weight of the auxiliary CTC loss (0: off)")
    group.add_argument(
        "--short-first-steps",
        type=int,
        default=0,
        help="curriculum: for this many steps train only on utterances up to --short-first-seconds",
    )
    group.add_argument("--short-first-seconds", type=float, default=2.5)


def _checkpoint_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--valid-every", type=int, default=500)
    group.add_argument("--valid-utterances", type=int, default=200)
    group.add_argument("--save-every-minutes", type=float, default=10)
    group.add_argument(
        "--snapshot-every",
        type=int,
        default=0,
        help="also keep the model every N steps in EXP_DIR/snapshots (for asr-train average; 0: off)",
    )
    group.add_argument("--snapshot-after", type=int, default=0, help="keep snapshots only after this step")


def _run_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--max-minutes", type=float, default=1e9, help="stop (and save) after this long")
    group.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast for the forward pass (1.5x per step on an AVX512-BF16 CPU: "
        "benchmarks/train_step_speed.py; ~10x slower on a CPU without it, fit warns); the losses are in float32",
    )
    group.add_argument("--threads", type=int, default=2)
    group.add_argument("--jobs", type=int, default=2, help="processes for the feature cache")
    group.add_argument("--seed", type=int, default=0)
