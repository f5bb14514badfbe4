"""``asr-train synth-multi``: a five-language synthetic speech data set (FLAC files + JSON-lines manifest).

    asr-train synth-multi --out DIR --num-utterances N --seed S --split train|heldout \\
        [--languages en de fr es it] [--engines espeak pico ...] [--jobs 1]

Writes ``DIR/audio/0000001.flac`` ... and appends one line per utterance to ``DIR/manifest.jsonl``
(``audio``, ``text``, ``language``, ``engine``, ``voice``, ``duration``, ``sample_rate``, ``augment``
...), batch by batch, flushed: a run that stops keeps what it wrote, and running the same command
again (or with a larger ``--num-utterances``) resumes after the last complete batch. The data set
is a function of the seed, split, languages and engines (kept in ``DIR/synth-multi.json`` and
checked on resume), whatever ``--jobs``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from training.multilingual.normalize import LANGUAGES
from training.multilingual.plan import BATCH, Planner
from training.multilingual.render import render_batch
from training.multilingual.voices import check_split
from training.resumable import check_settings, done_indices
from training.tts import ENGINES

log = logging.getLogger(__name__)
MANIFEST = "manifest.jsonl"
SETTINGS = "synth-multi.json"


def synthesize(
    out_dir: Path,
    num_utterances: int,
    seed: int,
    split: str,
    languages: tuple[str, ...] = LANGUAGES,
    engines: tuple[str, ...] | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> Path:
    """Write (or complete) the data set under ``out_dir``; return the manifest's path."""
    split = check_split(split)
    if num_utterances < 0 or jobs < 1:
        raise ValueError("num_utterances must be >= 0 and jobs >= 1")
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    settings = {"seed": seed, "split": split, "languages": list(languages), "engines": engines and list(engines)}
    check_settings(out_dir / SETTINGS, settings, "synth-multi")
    manifest = out_dir / MANIFEST
    done = done_indices(manifest)
    planner = Planner(seed, split, num_utterances, languages, engines)
    # A batch is written in one go, so a batch with any row in the manifest is complete. Its plans
    # depend on num_utterances only through the last batch's babble mates.
    starts = [s for s in range(1, num_utterances + 1, BATCH) if not done.intersection(range(s, s + BATCH))]

    def tasks() -> Iterator[tuple]:
        for start in starts:
            numbers = range(start, min(start + BATCH, num_utterances + 1))
            yield [planner.plan(number) for number in numbers], str(out_dir), seed, split

    total = sum(min(BATCH, num_utterances + 1 - start) for start in starts)
    started, written, audio_s = time.perf_counter(), 0, 0.0
    with manifest.open("a", encoding="utf-8") as sink, tqdm(total=total, unit="utt", disable=not progress) as bar:
        if jobs == 1:
            results: Iterator[list[dict]] = map(render_batch, tasks())
            pool = None
        else:
            # spawn: workers never inherit the parent's threads or its Markov model.
            pool = multiprocessing.get_context("spawn").Pool(jobs)
            results = pool.imap(render_batch, tasks())
        try:
            for rows in results:
                sink.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
                sink.flush()
                written += len(rows)
                audio_s += sum(row["duration"] for row in rows)
                bar.update(BATCH)
        finally:
            if pool is not None:
                pool.terminate()
    elapsed = time.perf_counter() - started
    log.info("wrote %d utterances, %.2f h of audio in %.0f s", written, audio_s / 3600, elapsed)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asr-train synth-multi``."""
    parser.add_argument("--out", type=Path, required=True, help="output folder (audio/, manifest.jsonl)")
    parser.add_argument("--num-utterances", type=int, required=True, help="utterances in the data set")
    parser.add_argument("--seed", type=int, default=0, help="the data set is a function of this seed")
    parser.add_argument("--split", choices=("train", "heldout"), default="train", help="voices and text")
    parser.add_argument("--languages", nargs="+", choices=LANGUAGES, default=list(LANGUAGES))
    parser.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=None, help="default: all installed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one batch each)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """``asr-train synth-multi``: synthesize and print the manifest path."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engines = tuple(args.engines) if args.engines else None
    manifest = synthesize(
        args.out,
        args.num_utterances,
        args.seed,
        args.split,
        tuple(args.languages),
        engines,
        args.jobs,
        progress=not args.no_progress,
    )
    print(manifest)
    return 0
