"""Calibration of the server's confidences and stability on a manifest (decision 0020).

Decodes the manifest's utterances as streams through the engine's own decoders
(``server.engine.offline.decode_streams``, the server's path without asyncio) with word
times, word confidence, N-best and interim results on, then reports:

- utterances: a final's confidence against whether its transcript equals the reference
  (an utterance with several finals: their product, against the joined text);
- words: each final word's confidence against whether the alignment to the reference
  (jiwer) marks it correct;
- partials: each interim result's stability against whether the final's words start with
  its words;

as expected calibration error (ECE, 10 equal-width bins) and a reliability table (per bin:
count, mean confidence, fraction correct). ``--fit`` also recomputes the figures for other
softmax scales from the scores each final and partial was computed from (recorded as the
decoder hands them to ``server.engine.nbest``), without decoding again.

    python benchmarks/confidence.py --manifest data/heldout/manifest.jsonl --utterances 100
        [--skip 0] [--batch 25] [--threads 1] [--fit] [--report reports/confidence.json]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soxr
import torch
from report import write_report  # benchmarks/report.py (scripts run from this folder)

import server.engine.decoder as decoder_module
from server.engine.decoder import StreamOptions
from server.engine.nbest import final_results, partial_stability
from server.engine.offline import decode_streams, in_pieces
from server.engine.transcript import Result
from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.search.confidence import FINAL_SCALE, PARTIAL_SCALE
from server.search.loading import load_model_and_search
from training.manifest import read_audio, read_manifest
from training.text_normalize import normalize_text

BINS = 10
FIT_SCALES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.5)
PIECE_SAMPLES = 1600  # 100 ms pieces, as asr-train eval streams


@dataclass
class Recorder:
    """The arguments of every ``final_results`` / ``partial_stability`` call, by the id of each result
    it returned (the results stay referenced here, so the ids stay unique)."""

    calls: dict[int, tuple[Callable[..., list[Result]], tuple, dict, int]] = field(default_factory=dict)
    kept: list[list[Result]] = field(default_factory=list)

    def wrap(self, function: Callable[..., list[Result]]) -> Callable[..., list[Result]]:
        def recorded(*args: Any, **kwargs: Any) -> list[Result]:
            results = function(*args, **kwargs)
            self.kept.append(results)
            for index, result in enumerate(results):
                self.calls[id(result)] = (function, args, kwargs, index)
            return results

        return recorded

    def recompute(self, result: Result, scale: float) -> Result:
        """``result`` as its call would have made it with the softmax at ``scale``."""
        function, args, kwargs, index = self.calls[id(result)]
        return function(*args, **{**kwargs, "scale": scale})[index]


def reliability(confidences: Sequence[float], correct: Sequence[bool]) -> dict:
    """ECE over ``BINS`` equal-width bins, and the table (bins with members only)."""
    values, hits = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "ece": None, "table": []}
    index = np.minimum((values * BINS).astype(int), BINS - 1)
    table, ece = [], 0.0
    for b in range(BINS):
        member = index == b
        count = int(member.sum())
        if not count:
            continue
        mean, accuracy = float(values[member].mean()), float(hits[member].mean())
        ece += count / values.size * abs(mean - accuracy)
        table.append(
            {"bin": f"{b / BINS:.1f}-{(b + 1) / BINS:.1f}", "count": count, "confidence": mean, "correct": accuracy}
        )
    return {
        "count": int(values.size),
        "ece": round(ece, 4),
        "mean_confidence": round(float(values.mean()), 4),
        "accuracy": round(float(hits.mean()), 4),
        "table": table,
    }


def _word_correctness(reference: str, hypothesis: str) -> list[bool]:
    """Per hypothesis word: whether jiwer's alignment to the reference has it as a hit."""
    words = hypothesis.split()
    correct = [False] * len(words)
    if not words:
        return correct
    alignment = jiwer.process_words(reference or "<empty>", hypothesis).alignments[0]
    for chunk in alignment:
        if chunk.type == "equal":
            for position in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                correct[position] = True
    return correct


@dataclass
class Observations:
    """Per unit (utterance, word, partial): the finals or partials it came from, and whether it was right."""

    utterances: list[tuple[list[Result], bool]] = field(default_factory=list)
    words: list[tuple[Result, int, bool]] = field(default_factory=list)  # (final, word index, correct)
    partials: list[tuple[Result, bool]] = field(default_factory=list)
    oracle_hits: int = 0
    single_final: int = 0
    empty: int = 0
    word_mismatch: int = 0

    def add(self, reference: str, updates: list) -> None:
        finals = [r for u in updates for r in u.results if r.is_final and r.channel == 0]
        hypothesis = normalize_text(" ".join(r.transcript for r in finals))
        if not finals:
            self.empty += 1
            return
        self.utterances.append((finals, hypothesis == reference))
        if len(finals) == 1:
            self.single_final += 1
            texts = [finals[0].transcript] + [a.transcript for a in finals[0].alternatives]
            self.oracle_hits += any(normalize_text(t) == reference for t in texts)
        words = [(final, i, normalize_text(w.text)) for final in finals for i, w in enumerate(final.words)]
        words = [(final, i, text) for final, i, text in words if text]
        correctness = _word_correctness(reference, hypothesis)
        if [text for _, _, text in words] != hypothesis.split():
            self.word_mismatch += 1  # a word that normalisation splits: left out of the word figures
        else:
            self.words.extend((final, i, ok) for (final, i, _), ok in zip(words, correctness, strict=True))
        by_index = {r.utterance_index: normalize_text(r.transcript).split() for r in finals}
        for update in updates:
            for result in update.results:
                if result.is_final or result.channel != 0:
                    continue
                partial = normalize_text(result.transcript).split()
                final_words = by_index.get(result.utterance_index, [])
                self.partials.append((result, final_words[: len(partial)] == partial))

    def figures(self, final: Callable[[Result], Result], partial: Callable[[Result], Result]) -> dict:
        """The three reliability tables, with each result passed through ``final`` / ``partial`` first."""
        utterance_conf = [math.prod(final(r).confidence for r in finals) for finals, _ in self.utterances]
        word_conf = [final(r).words[i].confidence for r, i, _ in self.words]
        stability = [partial(r).stability for r, _ in self.partials]
        return {
            "utterances": reliability(utterance_conf, [ok for _, ok in self.utterances]),
            "words": reliability(word_conf, [ok for _, _, ok in self.words]),
            "partials": reliability(stability, [ok for _, ok in self.partials]),
        }


def _print_table(name: str, figures: dict) -> None:
    print(
        f"{name}: {figures['count']} units, ECE {figures['ece']}, mean confidence {figures.get('mean_confidence')}, "
        f"fraction correct {figures.get('accuracy')}"
    )
    print(f"  {'bin':9s} {'count':>6s} {'confidence':>10s} {'correct':>8s}")
    for row in figures["table"]:
        print(f"  {row['bin']:9s} {row['count']:6d} {row['confidence']:10.3f} {row['correct']:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--skip", type=int, default=0, help="start at this utterance of the manifest")
    parser.add_argument("--batch", type=int, default=25, help="utterances decoded together, as concurrent streams")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam", type=int, help="search width (default: the model's)")
    parser.add_argument("--fit", action="store_true", help="also recompute the figures for other softmax scales")
    parser.add_argument("--report", type=Path, default=Path("reports/confidence.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, search = load_model_and_search(args.model)
    if args.beam is not None:
        search = search.with_options(beam=args.beam)
    recorder = Recorder()
    decoder_module.final_results = recorder.wrap(final_results)  # type: ignore[attr-defined]
    decoder_module.partial_stability = recorder.wrap(partial_stability)  # type: ignore[attr-defined]
    options = StreamOptions(interim_results=True, word_times=True, word_confidence=True, max_alternatives=10)
    utterances = read_manifest(args.manifest)[args.skip : args.skip + args.utterances]
    observations = Observations()
    rate = model.config.sample_rate
    for start in range(0, len(utterances), args.batch):
        batch = utterances[start : start + args.batch]
        streams = []
        for utterance in batch:
            samples, source_rate = read_audio(utterance.audio)
            if source_rate != rate:
                samples = soxr.resample(samples, source_rate, rate).astype(np.float32)
            streams.append(in_pieces(samples, PIECE_SAMPLES))
        for utterance, updates in zip(batch, decode_streams(model, search, streams, options), strict=True):
            observations.add(normalize_text(utterance.text), updates)
        print(f"decoded {start + len(batch)} / {len(utterances)}", flush=True)

    def unchanged(result: Result) -> Result:
        return result

    figures = observations.figures(unchanged, unchanged)
    for name in ("utterances", "words", "partials"):
        _print_table(name, figures[name])
    oracle = observations.oracle_hits / max(1, observations.single_final)
    print(
        f"N-best: the reference among the alternatives of {observations.oracle_hits} / {observations.single_final} "
        f"single-final utterances ({oracle:.1%}); empty results: {observations.empty}"
    )
    run: dict[str, Any] = {
        "manifest": str(args.manifest),
        "skip": args.skip,
        "utterances": len(utterances),
        "beam": search.beam,
        "final_scale": FINAL_SCALE,
        "partial_scale": PARTIAL_SCALE,
        **figures,
        "nbest_oracle_sentence_accuracy": round(oracle, 4),
        "empty_results": observations.empty,
        "word_mismatches": observations.word_mismatch,
    }
    if args.fit:
        fits = []
        for scale in FIT_SCALES:

            def rescale(result: Result, scale: float = scale) -> Result:
                return recorder.recompute(result, scale)

            rescaled = observations.figures(rescale, rescale)
            eces = {name: rescaled[name]["ece"] for name in rescaled}
            print(
                f"scale {scale:4.2f}: ECE utterances {eces['utterances']}, words {eces['words']}, "
                f"partials {eces['partials']}"
            )
            fits.append({"scale": scale, **eces})
        run["fit"] = fits
    write_report(args.report, model, [run])


if __name__ == "__main__":
    main()
