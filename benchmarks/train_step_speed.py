"""Training-step speed of ``asr-train fit``: float32 against ``--bf16`` autocast.

Prints figures and writes a JSON report. Usage:
    python benchmarks/train_step_speed.py --train-features exp/en-small-v4/features-train
        [--model models/en-small] [--threads 2] [--batches 4] [--max-batch-frames 8000]
        [--report reports/train_step_speed.json]
Times forward + backward of the real training loss (RNN-T + 0.3 CTC, serving mask) on the
first ``--batches`` length-bucketed batches of a feature cache (``asr-train fit`` builds one
under its exp dir), each precision run twice in alternation after one warm-up batch; the
optimizer step is left out (it is the same in both and small). Weights are not changed.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from report import write_report  # benchmarks/report.py (scripts run from this folder)

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.frames import fbank_frames_per_second
from training.batching import bucketed_batches, collate
from training.features import FeatureCache
from training.objective import transducer_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--train-features", type=Path, required=True, help="a feature cache directory of fit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--max-batch-frames", type=int, default=8000)
    parser.add_argument("--report", type=Path, default=Path("reports/train_step_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).float().train()
    ctc_head = torch.nn.Linear(model.config.encoder.d_model, model.config.tokenizer.vocab_size)
    cache = FeatureCache(args.train_features)
    order = bucketed_batches([cache.length(i) for i in range(len(cache))], args.max_batch_frames, random.Random(0))
    batches = [collate(cache, indices, model.tokenizer) for indices in order[: args.batches + 1]]
    encoder = model.config.encoder
    mask = (encoder.chunk_size, encoder.left_chunks, encoder.right_context)

    def run(bf16: bool, timed: list) -> float:
        started = time.perf_counter()
        for batch in timed:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = transducer_loss(model, batch, mask, ctc_head, 0.3).total
            loss.backward()
            model.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    run(False, batches[:1])
    run(True, batches[:1])
    timed = batches[1:]
    seconds = {"float32": 0.0, "bfloat16": 0.0}
    for _ in range(2):
        seconds["float32"] += run(False, timed)
        seconds["bfloat16"] += run(True, timed)
    audio = 2 * sum(float(b.feature_lengths.sum()) for b in timed) / fbank_frames_per_second(model.config.features)
    runs = []
    for precision, compute in seconds.items():
        steps = 2 * len(timed)
        runs.append(
            {
                "precision": precision,
                "steps": steps,
                "seconds_per_step": compute / steps,
                "audio_seconds_per_step": audio / steps,
                "times_real_time": audio / compute,
            }
        )
        print(
            f"{precision:9s} {compute / steps:.2f} s per step ({audio / steps:.0f} s of audio), "
            f"{audio / compute:.0f}x real time, threads={args.threads}"
        )
    print(f"bf16 speed-up: {seconds['float32'] / seconds['bfloat16']:.2f}x")
    write_report(args.report, model, runs)


if __name__ == "__main__":
    main()
