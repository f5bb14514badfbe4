"""``asr-train curve``: the training curve of a run from its ``log.jsonl`` as a Markdown table.

One row per ``--at`` step: mean RNN-T and CTC loss per target token over ``--window`` steps
from there, and the last validation WER measured up to the row's last step. A step logged
twice (a resumed run redoes the steps after its last save) counts with its latest record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", type=Path, help="EXP_DIR/log.jsonl of asr-train fit")
    parser.add_argument("--at", type=int, nargs="+", required=True, help="first step of each row")
    parser.add_argument("--window", type=int, default=50)


def curve_rows(records: list[dict], at: list[int], window: int) -> list[dict]:
    """Rows {first, last, rnnt, ctc, valid_wer} from log records (later records win)."""
    by_step = {record["step"]: record for record in records}
    validated = sorted((step, r["valid_wer"]) for step, r in by_step.items() if "valid_wer" in r)
    rows = []
    for first in at:
        chunk = [by_step[s] for s in range(first, first + window) if s in by_step]
        if not chunk:
            continue
        last = chunk[-1]["step"]
        wer = [value for step, value in validated if step <= last]
        rows.append(
            {
                "first": first,
                "last": last,
                "rnnt": sum(r["rnnt"] for r in chunk) / len(chunk),
                "ctc": sum(r["ctc"] for r in chunk) / len(chunk),
                "valid_wer": wer[-1] if wer else None,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    records = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    print("| steps | RNN-T | CTC | last validation WER |")
    print("|---|---|---|---|")
    for row in curve_rows(records, args.at, args.window):
        wer = "" if row["valid_wer"] is None else f"{row['valid_wer']:.4f}"
        print(f"| {row['first']}–{row['last']} | {row['rnnt']:.2f} | {row['ctc']:.2f} | {wer} |")
    return 0
