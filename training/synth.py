"""Synthesize a speech data set with espeak-ng: 16-bit WAV files plus a JSON-lines manifest.

Each utterance draws, from a generator seeded by (seed, utterance number), a transcript (the
training-text mixture of ``training.text_sources``, or the given sentences in order), a voice
(base voice + variant from the split's pool; the ``train`` and ``heldout`` pools are
disjoint), speaking rate, pitch, pitch range, word gap, level, additive white/pink/brown
noise at 5-40 dB SNR (or none), leading/trailing silence over a low noise floor, and a
sample rate (mostly 16 kHz; 8 kHz is telephone band, sometimes mu-law). So the output is a
function of the seed alone, whatever the number of worker processes.

Output: ``OUT/audio/0000001.wav`` ... and ``OUT/manifest.jsonl`` with one object per line:
``{"audio": "audio/0000001.wav", "text": ..., "language": "en", "duration": ..., "voice": ...}``
plus the other synthesis parameters.

The pieces: ``training.voices`` (voice pools), ``training.utterances`` (drawing and rendering one
utterance), ``training.espeak`` and ``training.signal_ops``; this module writes whole data sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from training.espeak import ESPEAK, run_espeak
from training.sentence_lists import heldout_sentences, read_sentence_file, reserved_sentences
from training.signal_ops import resample
from training.text_normalize import normalize_text
from training.text_sources import MixtureWeights, TrainingSentences
from training.utterances import plan_utterance, render_task, utterance_rng
from training.voices import SPLITS, Split, voice_pool

log = logging.getLogger(__name__)


def synthesize_sentence(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, int]:
    """Clean speech for ``text`` (espeak-ng's own silences kept): float32 samples and their rate."""
    audio, native_rate = run_espeak(text, voice, rate, pitch)
    return resample(audio, native_rate, sample_rate), sample_rate


# ---------------------------------------------------------------------------- data sets


def _transcripts(
    seed: int, count: int, sentences: Sequence[str] | None, mixture: MixtureWeights | None
) -> Iterator[tuple[str, str]]:
    """``(text, source)`` for utterances 1..count: the given sentences cycled, else the mixture."""
    if sentences is not None:
        for number in range(1, count + 1):
            yield sentences[(number - 1) % len(sentences)], "file"
        return
    generator = TrainingSentences(mixture)
    for number in range(1, count + 1):
        yield generator.sample(utterance_rng(seed, number, "text"))


def _usable_sentences(sentences: Sequence[str], split: Split) -> list[str]:
    """Normalize; for training, drop held-out/CI sentences (they must never be trained on)."""
    normalized = [text for text in (normalize_text(s) for s in sentences) if text]
    if split == "train":
        reserved = reserved_sentences()
        kept = [text for text in normalized if text not in reserved]
        if len(kept) < len(normalized):
            log.warning("dropped %d held-out sentences from training text", len(normalized) - len(kept))
        normalized = kept
    if not normalized:
        raise ValueError("no usable sentences")
    return normalized


def synthesize(
    out_dir: Path,
    num_utterances: int,
    seed: int,
    split: Split,
    jobs: int,
    sentences: list[str] | None = None,
    *,
    mixture: MixtureWeights | None = None,
    progress: bool = True,
) -> Path:
    """Write ``num_utterances`` utterances and ``manifest.jsonl`` under ``out_dir``; return the manifest.

    Transcripts: ``sentences`` in order (cycled) when given, else the 200 held-out sentences
    for ``split="heldout"`` and the training-text mixture (``mixture`` weights) for
    ``split="train"``. Voices come from ``voice_pool(split)``. The result depends only on
    the arguments, not on ``jobs`` (worker processes, imap in order).

    With ``jobs > 1`` the workers are spawned, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard (``asr-train`` has it).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if num_utterances < 0 or jobs < 1:
        raise ValueError("num_utterances must be >= 0 and jobs >= 1")
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(f"{ESPEAK} not found: install it (Debian/Ubuntu: apt-get install espeak-ng)")
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    if sentences is None and split == "heldout":
        sentences = list(heldout_sentences())
    if sentences is not None:
        sentences = _usable_sentences(sentences, split)
    voices = voice_pool(split)

    tasks = (
        (plan_utterance(seed, number, split, text, source, voices), str(out_dir), split, seed)
        for number, (text, source) in enumerate(_transcripts(seed, num_utterances, sentences, mixture), 1)
    )
    manifest = out_dir / "manifest.jsonl"
    partial = manifest.with_name(manifest.name + ".partial")
    skipped = 0
    with (
        partial.open("w", encoding="utf-8") as sink,
        tqdm(total=num_utterances, unit="utt", desc=f"synth {split}", disable=not progress) as bar,
    ):
        if jobs == 1:
            skipped = _write_rows(map(render_task, tasks), sink, bar)
        else:
            # spawn: workers never inherit the parent's threads (torch) or its 450 MB Markov model.
            with multiprocessing.get_context("spawn").Pool(jobs) as pool:
                skipped = _write_rows(pool.imap(render_task, tasks, chunksize=4), sink, bar)
    if skipped > max(1, num_utterances // 100):
        raise RuntimeError(
            f"espeak-ng failed on {skipped} of {num_utterances} utterances (see the warnings); "
            f"partial manifest left at {partial}"
        )
    partial.replace(manifest)
    return manifest


def _write_rows(rows: Iterator[dict | None], sink: TextIO, bar: tqdm) -> int:
    """Write each rendered utterance's manifest line; return how many failed (None rows)."""
    skipped = 0
    for row in rows:
        if row is None:
            skipped += 1
        else:
            sink.write(json.dumps(row) + "\n")
        bar.update()
    return skipped


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asr-train synth``."""
    parser.add_argument("--out", type=Path, required=True, help="output folder (audio/ and manifest.jsonl)")
    parser.add_argument(
        "--num-utterances",
        type=int,
        default=None,
        help="utterances to write (default: one per sentence of --sentences / the held-out list)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the data set is a function of this seed")
    parser.add_argument("--split", choices=SPLITS, default="train", help="voice pool (and default text)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument(
        "--sentences",
        type=Path,
        default=None,
        help="text file, one sentence per line, used in order (cycled); default: generated "
        "training text for --split train, the 200 held-out sentences for --split heldout",
    )
    parser.add_argument(
        "--mixture",
        type=MixtureWeights.parse,
        default=None,
        help="weights of the markov,wordfreq,everyday text sources (default 0.40,0.25,0.35)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """``asr-train synth``: synthesize and print the manifest path."""
    sentences = read_sentence_file(args.sentences) if args.sentences is not None else None
    count = args.num_utterances
    if count is None:
        if sentences is None and args.split == "train":
            raise SystemExit("synth: --num-utterances is required for generated training text")
        count = len(sentences if sentences is not None else heldout_sentences())
    manifest = synthesize(
        args.out,
        count,
        args.seed,
        args.split,
        args.jobs,
        sentences,
        mixture=args.mixture,
        progress=not args.no_progress,
    )
    print(manifest)
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m training.synth", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
