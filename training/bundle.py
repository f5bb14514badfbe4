"""``asr-train bundle``: turn a training checkpoint into a model directory the server loads.

Writes fp16 weights, config.json and the tokenizer (``save_model``), and the run's
``trainer.json`` (the step and hours seen, which the model card reports). The CTC head that
``asr-train fit`` trains beside the transducer (``ctc_head.safetensors`` in the checkpoint)
becomes part of the model, so final results can be rescored with it (decision 0015).
The output's decoding section is the checkpoint's (greedy for a training checkpoint): set
the search and rescoring afterwards with ``asr-train lm --set-default`` and
``asr-train tune-rescoring --set-default``; LM files already in the output stay.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file

from server.model.checkpoint import load_model, save_model
from server.model.transducer import StreamingTransducer
from server.search.loading import load_model_and_search, save_search_files
from training.trainer_state import CTC_HEAD_FILE, TRAINER_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="e.g. exp/en-small-v4/latest")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write, e.g. models/en-small")
    parser.add_argument(
        "--ctc-head",
        type=Path,
        help=f"CTC head to attach (default: CHECKPOINT/{CTC_HEAD_FILE} when there; an averaged "
        "checkpoint has none, so name the run's latest one)",
    )


def with_ctc_head(model: StreamingTransducer, head_file: Path) -> StreamingTransducer:
    """The same model with the CTC head of ``head_file`` (weight (V, D), bias (V,)) attached."""
    config = model.config.model_copy(update={"ctc_head": True})
    attached = StreamingTransducer(config, model.tokenizer)
    tensors = {f"ctc_head.{name}": tensor for name, tensor in load_file(str(head_file)).items()}
    attached.load_state_dict({**model.state_dict(), **tensors})
    return attached


def bundle(checkpoint: Path, out: Path, ctc_head_file: Path | None = None) -> Path:
    """Write ``checkpoint`` as a model directory ``out``; the CTC head of ``ctc_head_file`` (default:
    the checkpoint's own, when it has one and the model does not carry one already) is attached."""
    model, search = load_model_and_search(checkpoint)
    if ctc_head_file is None and model.ctc_head is None and (checkpoint / CTC_HEAD_FILE).is_file():
        ctc_head_file = checkpoint / CTC_HEAD_FILE
    if ctc_head_file is not None:
        model = with_ctc_head(model, ctc_head_file)
    save_model(model, out)
    save_search_files(search.resources, model.config, out)
    if (checkpoint / TRAINER_FILE).is_file():
        shutil.copyfile(checkpoint / TRAINER_FILE, out / TRAINER_FILE)
    return out


def run(args: argparse.Namespace) -> int:
    out = bundle(args.checkpoint, args.out, args.ctc_head)
    print(f"wrote {out} (CTC head: {load_model(out).ctc_head is not None})")
    return 0
