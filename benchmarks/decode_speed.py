"""Decoding speed of the streaming path (the engine's BatchStepper, or whole StreamDecoders), one stream or a batch.

Prints figures and writes a JSON report. Usage:
    python benchmarks/decode_speed.py --manifest data/heldout/manifest.jsonl [--model DIR]
        [--threads 1] [--streams 1 4 16] [--utterances 50] [--beam 1 4] [--path step|stream]
        [--multi-talker] [--report reports/decode_speed.json]
With --streams N, N copies of each utterance run as one batch per step (what the server's
engine does under load); the real-time factor is compute time over total audio time.
--beam runs each width (1 = greedy; more = beam search with the model's LM fusion);
without it, the model's default search. --multi-talker measures every setting with streams
that do not and that do ask for multi-talker results (a t-SOT model: the per-stream cost of both).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from report import write_report  # benchmarks/report.py (scripts run from this folder)

from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.search.loading import load_model_and_search
from training.speed import PATHS, real_time_factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--streams", type=int, nargs="+", default=[1])
    parser.add_argument("--utterances", type=int, default=50)
    parser.add_argument("--beam", type=int, nargs="+", help="search widths to measure (default: the model's)")
    parser.add_argument(
        "--path",
        choices=sorted(PATHS),
        default="step",
        help="step: the model steps alone (what this benchmark always measured); stream: whole stream decoders",
    )
    parser.add_argument(
        "--multi-talker",
        action="store_true",
        help="measure each setting twice, streams without and with multi_talker (a t-SOT model's two cases)",
    )
    parser.add_argument("--report", type=Path, default=Path("reports/decode_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, default_search = load_model_and_search(args.model)
    runs = []
    for beam in args.beam or [default_search.beam]:
        search = default_search.with_options(beam=beam)
        for streams in args.streams:
            for multi_talker in [False, True] if args.multi_talker else [False]:
                result = real_time_factor(
                    model, search, args.manifest, args.utterances, streams, args.path, multi_talker
                )
                result["beam"] = beam
                print(
                    f"beam={beam} streams={streams:3d} threads={args.threads} multi_talker={multi_talker} "
                    f"RTF={result['real_time_factor']:.4f} "
                    f"({result['audio_seconds']:.0f} s audio in {result['compute_seconds']:.1f} s)"
                )
                runs.append(result)
    write_report(args.report, model, runs)


if __name__ == "__main__":
    main()
