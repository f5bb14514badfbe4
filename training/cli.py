"""``asr-train``: the training recipe's command line (synth, fit, average, bundle, lm, tune-rescoring, eval,
card, curve)."""

from __future__ import annotations

import argparse
import sys

from training import average, bundle, calibrate_int8, curve, evaluate, fit, lm, model_card, synth, tune_rescoring
from training.devsets import asterisk_fr
from training.multilingual import synth_multi
from training.tsot import mix as mix_tsot
from training.whisper import convert as convert_whisper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asr-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module, help_text in [
        ("synth", synth, "synthesize a speech data set with espeak-ng (manifest + audio)"),
        ("synth-multi", synth_multi, "synthesize the five-language data set (all engines, augmented; resumable)"),
        ("mix-tsot", mix_tsot, "two-talker t-SOT mixtures of a single-talker manifest (CTC-aligned, <cc> targets)"),
        ("fit", fit, "train a streaming Conformer-Transducer"),
        ("average", average, "average the weights of a run's snapshots (or any checkpoints of one run)"),
        ("bundle", bundle, "turn a training checkpoint (with its CTC head) into a model directory"),
        ("lm", lm, "build the token n-gram LM for beam search (or --words: the word LM) and make it a model's default"),
        ("tune-rescoring", tune_rescoring, "choose the word-LM rescoring weights on a validation manifest"),
        ("eval", evaluate, "WER/CER of a model on a manifest"),
        ("calibrate-int8", calibrate_int8, "measure the input ranges the server's --int8 quantizes with"),
        ("card", model_card, "measure a model and write its MODEL_CARD.md"),
        ("curve", curve, "a run's training curve (log.jsonl) as a Markdown table"),
        ("convert-whisper", convert_whisper, "Whisper's encoder (CTranslate2 model.bin or openai .pt) to safetensors"),
        ("devset-asterisk-fr", asterisk_fr, "the French real-speech dev manifest (asterisk-core-sounds-fr-wav)"),
    ]:
        sub = commands.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
