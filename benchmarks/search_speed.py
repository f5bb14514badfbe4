"""CPU seconds of the beam search alone (``beam_search_frames``) over random encoder frames.

Isolates the search from the encoder, the front end and the server: B streams, K hypotheses,
chunks of the model's frames, the model's default search (LM fusion included). Process CPU
time, so a busy machine skews it less than wall time. Usage:
    python benchmarks/search_speed.py [--model DIR] [--streams 1 32] [--calls 20] [--repeats 3]
        [--report reports/search_speed.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from report import write_report  # benchmarks/report.py (scripts run from this folder)

from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.search.beam import beam_search_frames
from server.search.hypotheses import init_beam_state
from server.search.loading import load_model_and_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--calls", type=int, default=20, help="chunks searched per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements; the least is reported")
    parser.add_argument("--report", type=Path, default=Path("reports/search_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, search = load_model_and_search(args.model)
    if search.beam == 1:
        raise SystemExit("search_speed: the model's default search is greedy; this measures beam search")
    frames, width = model.config.encoder.chunk_size, model.config.encoder.d_model
    runs = []
    for streams in args.streams:
        encoder_out = torch.randn(streams, frames, width, generator=torch.Generator().manual_seed(0))
        seconds = []
        for _ in range(args.repeats):
            state = init_beam_state(streams, search.beam, model.config.decoder.context_size, search.lm_context_size, 0)
            started = time.process_time()
            with torch.inference_mode():
                for _ in range(args.calls):
                    state, _ = beam_search_frames(
                        model, encoder_out, torch.full((streams,), frames), state, search,
                        torch.zeros(streams, dtype=torch.int64),
                    )  # fmt: skip
            seconds.append(time.process_time() - started)
        run = {"streams": streams, "beam": search.beam, "calls": args.calls, "cpu_seconds": round(min(seconds), 4)}
        print(f"streams={streams} beam={search.beam}: {run['cpu_seconds']:.3f} CPU s for {args.calls} chunks")
        runs.append(run)
    write_report(args.report, model, runs)


if __name__ == "__main__":
    main()
