#!/usr/bin/env bash
# The recipe of the bundled model models/en-small, as it was run (2-core CPU, no GPU).
# Resume in a later session: add --resume (same exp dir) or --init-from models/en-small
# with --schedule-offset STEP.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin

$BIN/asr-train synth --out data/train --num-utterances 30000 --seed 1 --split train --jobs 2
$BIN/asr-train synth --out data/heldout --num-utterances 200 --seed 3 --split heldout --jobs 2 \
    --sentences training/data/heldout_sentences.txt

# Validation set: generated training-style sentences (not the held-out ones) in held-out voices.
$BIN/python -c "
import random
from training.text_sources import TrainingSentences
generator, rng = TrainingSentences(), random.Random(20261121)
reserved = {l.strip() for l in open('training/data/heldout_sentences.txt') if not l.startswith('#')}
out = []
while len(out) < 300:
    text, _ = generator.sample(rng)
    if text not in reserved:
        out.append(text); reserved.add(text)
open('data/valid_sentences.txt', 'w').write(chr(10).join(out) + chr(10))
"
$BIN/asr-train synth --out data/valid2 --num-utterances 300 --seed 4 --split heldout --jobs 2 \
    --sentences data/valid_sentences.txt

# Training (session 1's runs with the old Post-LN blocks are in docs/training-status.md;
# this is the recommended run with pre-LN blocks, started as exp/en-small-v4 at the end of session 1).
# (data/train of session 1 had 22,508 utterances: its synthesis stopped on an espeak-ng crash,
# since fixed by a fallback voice.)
$BIN/asr-train fit --train-manifest data/train/manifest.jsonl --valid-manifest data/valid2/manifest.jsonl \
    --exp-dir exp/en-small-v4 --max-minutes 150 --max-batch-frames 8000 --lr 8e-4 --warmup-steps 300 \
    --valid-every 200 --spec-augment-after 1500 --valid-utterances 100 --ctc-weight 0.3 --save-every-minutes 5 "$@"

# Bundle the best checkpoint and measure it into its model card.
mkdir -p models/en-small
cp exp/en-small-v4/best/{config.json,model.safetensors,tokenizer.model,trainer.json} models/en-small/
$BIN/asr-train card --model models/en-small --heldout data/heldout/manifest.jsonl \
    --train-manifest data/train/manifest.jsonl
