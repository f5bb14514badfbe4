"""Phrase boosting measured: names the model misspells, and what boosting costs speech without them.

Decodes through the engine's own decoders (``server.engine.offline.decode_streams``, the
server's path without asyncio, default search and endpointing), each stream's context graph
built as the server builds it from a request (``server.api.search_options.context_graph``):

1. names: carrier sentences with names and rare words (``NAMES``) synthesized with espeak-ng,
   decoded without contexts and with all the names as one speech context, per boost: how many
   sentences get their name right, and their WER;
2. held-out: the manifest's utterances without contexts, then with the same names as an
   unrelated context (none of them is in its sentences), per boost: WER. The boosted run
   boosts every other stream of each batch and then the others, so every utterance has a
   boosted result and an unboosted one decoded beside boosted streams: those must equal the
   run without contexts token for token (``identical``). Wall times are printed too (what
   boosting half of the streams costs), on whatever else the machine runs.

    python benchmarks/phrase_boosting.py --manifest data/heldout/manifest.jsonl --utterances 100
        [--boost 5 10] [--batch 25] [--threads 1] [--report reports/phrase_boosting.json]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soundfile as sf
import soxr
import torch
from asr_client.api.asr.v1 import asr_pb2
from report import write_report  # benchmarks/report.py (scripts run from this folder)

from server.api.search_options import context_graph
from server.engine.decoder import StreamOptions
from server.engine.offline import decode_streams, in_pieces
from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.model.transducer import StreamingTransducer
from server.search.context_graph import ContextGraph
from server.search.loading import load_model_and_search
from server.search.options import Search
from training.manifest import read_audio, read_manifest
from training.text_normalize import normalize_text

# Names and rare words the bundled model misspells without help (espeak-ng's en-us voice).
NAMES = [
    "siobhan",
    "nguyen",
    "kubernetes",
    "dvorak",
    "xavier",
    "tchaikovsky",
    "okonkwo",
    "gdansk",
    "reykjavik",
    "worcester",
    "quinoa",
    "giuseppe",
    "ljubljana",
    "bjorn",
    "kowalski",
    "zimmerman",
    "priyanka",
    "tanaka",
]
TEMPLATES = (
    "please send the report to {} before friday",
    "i had lunch with {} yesterday",
    "we will ask {} about the new plan",
)
PIECE_SAMPLES = 1600  # 100 ms pieces, as asr-train eval streams


def synthesize(text: str, rate: int) -> np.ndarray:
    """espeak-ng's en-us voice at 160 words a minute, float32 at ``rate``."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", "-s", "160", text], check=True, capture_output=True
    ).stdout
    samples, source_rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(samples, source_rate, rate).astype(np.float32)


def names_graph(model: StreamingTransducer, boost: float) -> ContextGraph:
    """All the names as one speech context, built as the server builds a request's."""
    config = asr_pb2.RecognitionConfig(speech_contexts=[asr_pb2.SpeechContext(phrases=list(NAMES), boost=boost)])
    graph = context_graph(config, model.tokenizer, model.config.name)
    assert graph is not None
    return graph


def decode(
    model: StreamingTransducer,
    search: Search,
    audio: Sequence[np.ndarray],
    graphs: Sequence[ContextGraph | None],
    batch: int,
) -> list[tuple[str, tuple[int, ...]]]:
    """Each signal's joined finals and their tokens, ``batch`` streams at a time."""
    out = []
    for start in range(0, len(audio), batch):
        options = [StreamOptions(interim_results=False, context_graph=g) for g in graphs[start : start + batch]]
        pieces = [in_pieces(samples, PIECE_SAMPLES) for samples in audio[start : start + batch]]
        for updates in decode_streams(model, search, pieces, options):
            finals = [r for u in updates for r in u.results if r.is_final]
            out.append((" ".join(r.transcript for r in finals), tuple(t for r in finals for t, _ in r.tokens)))
    return out


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return jiwer.wer(list(references), [normalize_text(h) or "<empty>" for h in hypotheses])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--boost", type=float, nargs="+", default=[5.0])
    parser.add_argument("--batch", type=int, default=25, help="utterances decoded together, as concurrent streams")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", type=Path, default=Path("reports/phrase_boosting.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, search = load_model_and_search(args.model)
    rate = model.config.sample_rate
    run: dict[str, Any] = {"names": NAMES, "templates": TEMPLATES, "beam": search.beam}

    sentences = [template.format(name) for name in NAMES for template in TEMPLATES]
    audio = [synthesize(sentence, rate) for sentence in sentences]
    plain = [text for text, _ in decode(model, search, audio, [None] * len(audio), args.batch)]

    def named(hypotheses: list[str]) -> int:
        return sum(
            name in normalize_text(h).split()
            for h, name in zip(hypotheses, [n for n in NAMES for _ in TEMPLATES], strict=True)
        )

    run["names_plain"] = {"right": named(plain), "of": len(sentences), "wer": round(wer(sentences, plain), 4)}
    print(f"names, no context: {named(plain)} / {len(sentences)} right, WER {wer(sentences, plain):.2%}")
    run["names_boosted"] = {}
    for boost in args.boost:
        graph = names_graph(model, boost)
        boosted = [text for text, _ in decode(model, search, audio, [graph] * len(audio), args.batch)]
        figures = {"right": named(boosted), "of": len(sentences), "wer": round(wer(sentences, boosted), 4)}
        run["names_boosted"][str(boost)] = {**figures, "examples": list(zip(plain, boosted, strict=True))}
        print(f"names, boost {boost:g}: {figures['right']} / {len(sentences)} right, WER {figures['wer']:.2%}")

    utterances = read_manifest(args.manifest)[: args.utterances]
    held_out = []
    for utterance in utterances:
        samples, source_rate = read_audio(utterance.audio)
        held_out.append(
            samples if source_rate == rate else soxr.resample(samples, source_rate, rate).astype(np.float32)
        )
    references = [normalize_text(u.text) for u in utterances]
    started = time.perf_counter()
    baseline = decode(model, search, held_out, [None] * len(held_out), args.batch)
    base_seconds = time.perf_counter() - started
    base_wer = wer(references, [text for text, _ in baseline])
    run["heldout_plain_wer"] = round(base_wer, 4)
    run["heldout_plain_seconds"] = round(base_seconds, 1)
    print(f"held-out ({len(utterances)}), no context: WER {base_wer:.2%} ({base_seconds:.0f} s)")
    run["heldout_unrelated_context"] = {}
    for boost in args.boost:
        graph = names_graph(model, boost)
        boosted_results: list[tuple[str, tuple[int, ...]] | None] = [None] * len(held_out)
        identical = 0
        started = time.perf_counter()
        for parity in (0, 1):
            graphs = [graph if i % 2 == parity else None for i in range(len(held_out))]
            mixed = decode(model, search, held_out, graphs, args.batch)
            for i, result in enumerate(mixed):
                if graphs[i] is not None:
                    boosted_results[i] = result
                else:
                    identical += result == baseline[i]
        # Two runs, each with half of the streams boosted: per run, against the run without contexts.
        seconds = (time.perf_counter() - started) / 2
        boosted_wer = wer(references, [r[0] if r else "" for r in boosted_results])
        run["heldout_unrelated_context"][str(boost)] = {
            "wer": round(boosted_wer, 4),
            "unboosted_identical": identical,
            "of": len(held_out),
            "seconds_half_boosted": round(seconds, 1),
        }
        print(
            f"held-out, unrelated context at boost {boost:g}: WER {boosted_wer:.2%}; streams without context "
            f"beside boosted ones identical to the run without contexts: {identical} / {len(held_out)}; "
            f"{seconds:.0f} s a run with half of the streams boosted"
        )
    write_report(args.report, model, [run])


if __name__ == "__main__":
    main()
