#!/usr/bin/env bash
# Streams per GPU (issue 17), on a machine with one: the model step alone at growing batch sizes,
# then the whole service (gRPC, fbank, search, results) with the capacity search. Run from the
# repository root after `make install` (a CUDA build of torch: see docs/deploy.md for the image).
#   bash benchmarks/gpu.sh [--audio long20.wav]      # reports under reports/gpu-*.json
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
(cd benchmarks && "../$BIN/python" step_speed.py --device cuda --batches 1 8 32 64 128 256 512 \
    --report ../reports/gpu-step-speed.json)
# One engine process holds the GPU (several would each load the model on it); batches as large as
# the capacity search probes.
"$BIN/python" benchmarks/grpc_load.py --streams 64 --capacity-search --capacity-start 64 --capacity-max 1024 \
    --server-arg=--device=cuda --server-arg=--workers=1 --server-arg=--max-batch-size=256 \
    --report reports/gpu-grpc-load.json "$@"
