#!/usr/bin/env bash
# The recipe of the bundled model models/en-small, as it was run (2-core CPU, no GPU).
# Resume in a later session: add --resume (same exp dir) or --init-from models/en-small.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin

$BIN/asr-train synth --out data/train --num-utterances 30000 --seed 1 --split train --jobs 2
$BIN/asr-train synth --out data/valid --num-utterances 300 --seed 2 --split heldout --jobs 2
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

# Stage 1 (session 1): transducer loss only, stopped at step 906 while still emitting only blanks.
# (The synthesis of data/train stopped at 22,508 utterances on an espeak-ng crash, since
# fixed; stage 1 and 2 trained on those 22,508 utterances, 23.5 hours.)
$BIN/asr-train fit --train-manifest data/train/manifest.jsonl --valid-manifest data/valid/manifest.jsonl \
    --exp-dir exp/en-small --max-minutes 125 --max-batch-frames 8000 --lr 1.5e-3 --warmup-steps 500 \
    --valid-every 400 --spec-augment-after 1500 --valid-utterances 200 --ctc-weight 0 --max-steps 906

# Stage 2: warm start from stage 1 with the auxiliary CTC loss, LR schedule continued.
$BIN/asr-train fit --train-manifest data/train/manifest.jsonl --valid-manifest data/valid2/manifest.jsonl \
    --exp-dir exp/en-small-ctc --init-from exp/en-small/latest --schedule-offset 906 --max-minutes 88 \
    --max-batch-frames 8000 --lr 1.5e-3 --warmup-steps 500 --valid-every 300 --spec-augment-after 600 \
    --valid-utterances 200 --ctc-weight 0.3 "$@"

# Bundle the best checkpoint and measure it into its model card.
mkdir -p models/en-small
cp exp/en-small-ctc/best/{config.json,model.safetensors,tokenizer.model,trainer.json} models/en-small/
$BIN/asr-train card --model models/en-small --heldout data/heldout/manifest.jsonl \
    --train-manifest data/train/manifest.jsonl
