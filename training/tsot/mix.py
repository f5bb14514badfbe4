"""``asr-train mix-tsot``: a two-talker t-SOT data set from a single-talker manifest.

    asr-train mix-tsot --source data/train/manifest.jsonl --out DIR --num-utterances N --seed S \\
        [--model models/en-small] [--single-fraction 0.3] [--augment-prob 0.2]
        [--offset-seconds LO HI] [--max-relative-db 5]

Each output row is either one source utterance alone or two of the same language (different
voices when the manifest names them): the first talker at time 0, the second from a random
offset (a uniform fraction of the first one's length: full overlap to none) at a random level
within +-5 dB of the first (RMS over each one's aligned speech). At least ``--single-fraction``
of the rows are single-talker, spread evenly, so one model serves both cases. Some rows get a
room and noise (``training.multilingual.augment``); the sources keep their own augmentation.

Every source is aligned once with the model's CTC head (``training.tsot.align``; cached in
``DIR/alignments.jsonl``), and a row's target ``tsot_pieces`` is both talkers' pieces serialized
by emission time with ``<cc>`` at every change of talker (``training.tsot.serialize``).

Writes ``DIR/audio/0000001.flac`` ... (16-bit FLAC at the model's rate) and appends rows to
``DIR/manifest.jsonl``: ``audio``, ``text`` (the talkers' texts in order of their start),
``language``, ``speakers`` ([{text, start, end, source, voice}] by start time, seconds in the
mixture), ``tsot_pieces``, ``offset_s``, ``relative_db``, ``augment``, ``duration``, ``index``.
A row depends on the seed, its index and the source manifest only, so a stopped run resumes
where it stopped; the settings are kept in ``DIR/mix-tsot.json`` and checked on resume.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from server.model.checkpoint import DEFAULT_MODEL_DIR, load_model
from server.model.tokenizer import CHANNEL_CHANGE_PIECE, WORD_BOUNDARY
from server.model.transducer import StreamingTransducer
from training.manifest import read_audio, read_manifest
from training.multilingual import augment
from training.resumable import check_settings, done_indices
from training.signal_ops import db_to_gain, resample, rms
from training.tsot.align import TokenAlignment, align
from training.tsot.serialize import deserialize, serialize

log = logging.getLogger(__name__)
MANIFEST = "manifest.jsonl"
SETTINGS = "mix-tsot.json"
ALIGNMENTS = "alignments.jsonl"
MAX_RELATIVE_DB = 5.0
NOISE_COLORS = ("white", "pink", "brown")


@dataclass(frozen=True)
class Source:
    """One single-talker utterance of the source manifest."""

    audio: Path
    text: str
    language: str
    voice: str


@dataclass(frozen=True)
class MixPlan:
    """What one output row is made of; drawn from (seed, index) alone."""

    index: int
    first: int  # source numbers
    second: int | None  # None: a single-talker row
    offset_fraction: float  # the second talker's start, as a fraction of the first one's length
    offset_s: float | None  # or in seconds after the first's start (``--offset-seconds``), where set
    relative_db: float  # the second talker's level relative to the first (speech RMS)
    reverb: tuple[float, float] | None  # (rt60 s, direct-to-reverberant dB)
    noise: tuple[str, float] | None  # (colour, SNR dB)


def read_sources(manifest: Path) -> list[Source]:
    """The manifest's utterances, with the ``voice`` field when there is one (else the audio path)."""
    entries = [json.loads(line) for line in Path(manifest).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        Source(u.audio, u.text, u.language, str(entry.get("voice", u.audio)))
        for u, entry in zip(read_manifest(manifest), entries, strict=True)
    ]


def is_single(index: int, single_fraction: float) -> bool:
    """Whether row ``index`` (from 1) is single-talker: ceil(n * fraction) of the first n rows are,
    for every n, so any prefix of the data set (a stopped run) keeps at least the fraction."""
    return math.ceil(index * single_fraction - 1e-9) > math.ceil((index - 1) * single_fraction - 1e-9)


def plan_row(
    index: int,
    sources: Sequence[Source],
    seed: int,
    single_fraction: float,
    augment_prob: float,
    offset_seconds: tuple[float, float] | None = None,
    max_relative_db: float = MAX_RELATIVE_DB,
) -> MixPlan:
    """Row ``index``'s plan: its sources, the second talker's offset and level, augmentation.

    ``offset_seconds`` (lo, hi): the second talker starts uniformly within it (an evaluation set
    shaped like a test's) instead of anywhere in the first one's length; ``max_relative_db`` 0
    mixes at equal speech level."""
    rng = np.random.default_rng([seed, index])
    first = int(rng.integers(len(sources)))
    second: int | None = None
    if not is_single(index, single_fraction):
        same_language = [n for n, s in enumerate(sources) if n != first and s.language == sources[first].language]
        other_voice = [n for n in same_language if sources[n].voice != sources[first].voice]
        candidates = other_voice or same_language
        if candidates:
            second = int(candidates[int(rng.integers(len(candidates)))])
    offset_fraction = float(rng.uniform(0.0, 1.0))
    relative_db = float(rng.uniform(-max_relative_db, max_relative_db))
    reverb = (float(rng.uniform(0.2, 0.7)), float(rng.uniform(0.0, 10.0))) if rng.random() < augment_prob else None
    noise = None
    if rng.random() < augment_prob:
        noise = (NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))], float(rng.uniform(10.0, 30.0)))
    # Drawn last, so that the other draws of a seed stay what they were without it.
    offset_s = None if offset_seconds is None else float(rng.uniform(*offset_seconds))
    return MixPlan(index, first, second, offset_fraction, offset_s, relative_db, reverb, noise)


class AlignmentCache:
    """Each source's CTC alignment, computed once and kept in a JSON-lines file (None: it failed)."""

    def __init__(self, path: Path, model: StreamingTransducer) -> None:
        self.path = path
        self.model = model
        self._entries: dict[str, TokenAlignment | None] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    alignment = None if "error" in entry else TokenAlignment.from_json(entry)
                    self._entries[self._key(entry["audio"], entry["text"])] = alignment

    @staticmethod
    def _key(audio: str, text: str) -> str:
        return f"{audio}\t{text}"

    def get(self, source: Source, samples: np.ndarray, rate: int) -> TokenAlignment | None:
        key = self._key(str(source.audio), source.text)
        if key not in self._entries:
            entry: dict = {"audio": str(source.audio), "text": source.text}
            try:
                alignment = align(self.model, samples, rate, source.text)
                entry.update(alignment.to_json())
                self._entries[key] = alignment
            except ValueError as error:  # too few frames for the text: the source is not used
                log.warning("%s: no alignment: %s", source.audio, error)
                entry["error"] = str(error)
                self._entries[key] = None
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return self._entries[key]


def speech_rms(samples: np.ndarray, rate: int, alignment: TokenAlignment) -> float:
    """RMS of the aligned speech (first token's start to last token's end): silences do not count."""
    start, end = int(alignment.start_s[0] * rate), int(alignment.end_s[-1] * rate)
    return rms(samples[start:end]) or rms(samples)


def mix(first: np.ndarray, second: np.ndarray, offset: int, gain: float) -> np.ndarray:
    """``first`` (n1,) plus ``gain`` x ``second`` (n2,) starting at sample ``offset``: (max(n1, offset + n2),)."""
    out = np.zeros(max(first.size, offset + second.size), np.float32)
    out[: first.size] += first
    out[offset : offset + second.size] += gain * second
    return out


def channel_texts(pieces: Sequence[str]) -> list[str]:
    """The text of each virtual channel of a serialized piece sequence (SentencePiece's "▁" is a space)."""
    return [
        " ".join("".join(channel).replace(WORD_BOUNDARY, " ").split())
        for channel in deserialize(pieces, CHANNEL_CHANGE_PIECE)
    ]


def render_row(
    plan: MixPlan, sources: Sequence[Source], cache: AlignmentCache, rate: int, out_dir: Path
) -> dict | None:
    """Write row ``plan``'s audio; return its manifest row (None when a source has no alignment)."""
    talkers = [plan.first] if plan.second is None else [plan.first, plan.second]
    signals, alignments = [], []
    for number in talkers:
        samples, source_rate = read_audio(sources[number].audio)
        samples = resample(samples, source_rate, rate)
        alignment = cache.get(sources[number], samples, rate)
        if alignment is None or not alignment.tokens:
            return None
        signals.append(samples)
        alignments.append(alignment)
    rng = np.random.default_rng([plan.index, 1])
    offsets = [0]
    audio = signals[0].astype(np.float32)
    if len(signals) == 2:
        start = plan.offset_fraction * signals[0].size if plan.offset_s is None else plan.offset_s * rate
        offsets.append(round(start))
        gain = speech_rms(signals[0], rate, alignments[0]) / speech_rms(signals[1], rate, alignments[1])
        audio = mix(audio, signals[1], offsets[1], gain * db_to_gain(plan.relative_db))
    augmentations: dict[str, object] = {}
    if plan.reverb is not None:
        room = augment.room_impulse_response(rate, plan.reverb[0], rng, plan.reverb[1])
        audio = augment.reverberate(audio, room)[: audio.size]  # the tail past the mixture is cut
        augmentations.update(rt60=round(plan.reverb[0], 3), direct_db=round(plan.reverb[1], 2))
    if plan.noise is not None:
        audio = augment.add_noise(audio, rate, plan.noise[0], plan.noise[1], rng)
        augmentations.update(noise=plan.noise[0], snr_db=round(plan.noise[1], 2))
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:  # scaled down, never clipped: the talkers' relative level stays
        audio = audio * (0.99 / peak)
    path = Path("audio") / f"{plan.index:07d}.flac"
    sf.write(str(out_dir / path), audio, rate, subtype="PCM_16", format="FLAC")

    shift_s = [offset / rate for offset in offsets]
    speakers = [
        {
            "text": sources[number].text,
            "start": round(shift + alignment.start_s[0], 3),
            "end": round(shift + alignment.end_s[-1], 3),
            "source": str(sources[number].audio),
            "voice": sources[number].voice,
            "offset_s": round(shift, 6),  # where the source's audio starts in the mixture
        }
        for number, alignment, shift in zip(talkers, alignments, shift_s, strict=True)
    ]
    # A token's emission time is the end of its aligned frames: when a streaming model has heard it.
    pieces = serialize(
        [a.pieces for a in alignments],
        [[shift + t for t in a.end_s] for a, shift in zip(alignments, shift_s, strict=True)],
        CHANNEL_CHANGE_PIECE,
    )
    speakers.sort(key=lambda speaker: float(speaker["start"]))  # type: ignore[arg-type]
    return {
        "audio": str(path),
        "text": " ".join(str(speaker["text"]) for speaker in speakers),
        "language": sources[plan.first].language,
        "speakers": speakers,
        "tsot_pieces": pieces,
        "offset_s": round(shift_s[-1], 6) if len(talkers) == 2 else None,
        "relative_db": round(plan.relative_db, 2) if len(talkers) == 2 else None,
        "augment": augmentations,
        "duration": round(audio.size / rate, 4),
        "sample_rate": rate,
        "index": plan.index,
    }


def build(
    source_manifest: Path,
    out_dir: Path,
    num_utterances: int,
    seed: int,
    model: StreamingTransducer,
    single_fraction: float = 0.3,
    augment_prob: float = 0.2,
    offset_seconds: tuple[float, float] | None = None,
    max_relative_db: float = MAX_RELATIVE_DB,
) -> Path:
    """Write (or complete) the two-talker data set under ``out_dir``; return its manifest."""
    if not 0.0 <= single_fraction <= 1.0 or not 0.0 <= augment_prob <= 1.0:
        raise ValueError("single_fraction and augment_prob must be within [0, 1]")
    if offset_seconds is not None and not 0.0 <= offset_seconds[0] <= offset_seconds[1]:
        raise ValueError(f"offset_seconds {offset_seconds}: want 0 <= lo <= hi")
    if max_relative_db < 0:
        raise ValueError(f"max_relative_db {max_relative_db}: want >= 0")
    if model.ctc_head is None:
        raise ValueError(f"model {model.config.name} has no CTC head to align with")
    sources = read_sources(source_manifest)
    if not sources:
        raise ValueError(f"{source_manifest}: no utterances")
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    settings = {
        "source": str(Path(source_manifest).resolve()),
        "seed": seed,
        "model": model.config.name,
        "single_fraction": single_fraction,
        "augment_prob": augment_prob,
        "offset_seconds": None if offset_seconds is None else list(offset_seconds),
        "max_relative_db": max_relative_db,
    }
    check_settings(out_dir / SETTINGS, settings, "mix-tsot")
    manifest = out_dir / MANIFEST
    done = done_indices(manifest)
    cache = AlignmentCache(out_dir / ALIGNMENTS, model)
    rate = model.config.sample_rate
    written = 0
    with manifest.open("a", encoding="utf-8") as sink:
        for index in range(1, num_utterances + 1):
            if index in done:
                continue
            plan = plan_row(index, sources, seed, single_fraction, augment_prob, offset_seconds, max_relative_db)
            row = render_row(plan, sources, cache, rate, out_dir)
            if row is None:
                continue
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
            written += 1
    log.info("wrote %d rows (%d already there)", written, len(done))
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asr-train mix-tsot``."""
    parser.add_argument("--source", type=Path, required=True, help="single-talker manifest (e.g. asr-train synth's)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (audio/, manifest.jsonl)")
    parser.add_argument("--num-utterances", type=int, required=True, help="rows in the data set")
    parser.add_argument("--seed", type=int, default=0, help="the data set is a function of this seed")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model whose CTC head aligns the sources")
    parser.add_argument("--single-fraction", type=float, default=0.3, help="at least this share of rows is one talker")
    parser.add_argument("--augment-prob", type=float, default=0.2, help="chance of a room, and of noise, per row")
    parser.add_argument(
        "--offset-seconds",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="the second talker starts LO..HI s after the first (default: anywhere in the first one's length)",
    )
    parser.add_argument(
        "--max-relative-db", type=float, default=MAX_RELATIVE_DB, help="levels within +-this many dB (0: equal)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the alignments")


def run(args: argparse.Namespace) -> int:
    """``asr-train mix-tsot``: build the mixtures and print the manifest path."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    manifest = build(
        args.source,
        args.out,
        args.num_utterances,
        args.seed,
        model,
        args.single_fraction,
        args.augment_prob,
        None if args.offset_seconds is None else tuple(args.offset_seconds),
        args.max_relative_db,
    )
    print(manifest)
    return 0
