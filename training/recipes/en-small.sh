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

$BIN/asr-train fit --train-manifest data/train/manifest.jsonl --valid-manifest data/valid/manifest.jsonl \
    --exp-dir exp/en-small --max-minutes 125 --max-batch-frames 8000 --lr 1.5e-3 --warmup-steps 500 \
    --valid-every 400 --spec-augment-after 1500 --valid-utterances 200 "$@"

# Bundle the best checkpoint and measure it into its model card.
mkdir -p models/en-small
cp exp/en-small/best/{config.json,model.safetensors,tokenizer.model,trainer.json} models/en-small/
$BIN/asr-train card --model models/en-small --heldout data/heldout/manifest.jsonl \
    --train-manifest data/train/manifest.jsonl
