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
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from training.text_normalize import normalize_text
from training.text_sources import (
    MixtureWeights,
    TrainingSentences,
    heldout_sentences,
    read_sentence_file,
    reserved_sentences,
)

log = logging.getLogger(__name__)

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")
ESPEAK = "espeak-ng"
LANGUAGE = "en"

# espeak-ng's English voices (mbrola voices are not installed).
BASE_VOICES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# The variants of espeak-ng-data/voices/!v (1.51), except "Mr serious" (a space in the name).
VARIANTS = (
    *(f"m{i}" for i in range(1, 9)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt", *(f"klatt{i}" for i in range(2, 7)),
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "croak", "david", "ed", "edward", "edward2", "fast", "grandma", "grandpa",
    "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "linda", "marcelo",
    "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
    "robosoft", *(f"robosoft{i}" for i in range(2, 9)), "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)  # fmt: skip
# Never used for training, so the held-out set measures generalization to unseen voices.
HELDOUT_ONLY_VARIANTS = ("m7", "f4", "klatt3", "Annie", "edward2", "iven3", "robosoft4", "steph2")
# Besides those, this share of the other (base voice, variant) pairs is held out.
HELDOUT_PAIR_PERMILLE = 120

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
SAMPLE_RATE_WEIGHTS = (0.12, 0.55, 0.08, 0.08, 0.08, 0.09)
NOISE_TYPES = ("none", "white", "pink", "brown")
NOISE_WEIGHTS = (0.25, 0.25, 0.30, 0.20)

# A sentence starting with one of these is spoken with a question mark (rising intonation).
# fmt: off
_QUESTION_STARTERS = frozenset((
    "what", "where", "when", "why", "who", "whose", "which", "how", "can", "could", "would",
    "will", "do", "does", "did", "is", "are", "was", "were", "have", "has", "should", "shall",
    "may", "am",
))
# fmt: on


# ---------------------------------------------------------------------------- voices


def _pair_is_heldout(base: str, variant: str) -> bool:
    """A stable pseudo-random choice per (base, variant) pair (independent of Python's hash seed)."""
    digest = hashlib.sha256(f"{base}+{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < HELDOUT_PAIR_PERMILLE


def voice_pool(split: Split) -> tuple[str, ...]:
    """espeak-ng voice names (``base+variant`` or a bare base) of a split; the two are disjoint."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    heldout: list[str] = []
    train: list[str] = list(BASE_VOICES)  # the bare base voices are training voices
    for base in BASE_VOICES:
        for variant in VARIANTS:
            name = f"{base}+{variant}"
            if variant in HELDOUT_ONLY_VARIANTS or _pair_is_heldout(base, variant):
                heldout.append(name)
            else:
                train.append(name)
    return tuple(heldout if split == "heldout" else train)


# ---------------------------------------------------------------------------- espeak


def _espeak_command(
    text: str, voice: str, rate: int, pitch: int, word_gap: int = 0, pitch_range: int | None = None
) -> list[str]:
    command = [ESPEAK, "-v", voice, "-s", str(rate), "-p", str(pitch), "-g", str(word_gap), "--stdout"]
    if pitch_range is None:
        return [*command, text]
    # The command line has no pitch-range option; SSML prosody has one.
    return [*command, "-m", f'<speak><prosody range="{pitch_range}%">{escape(text)}</prosody></speak>']


def run_espeak(
    text: str, voice: str, rate: int, pitch: int, word_gap: int = 0, pitch_range: int | None = None
) -> tuple[np.ndarray, int]:
    """Mono float32 speech from one espeak-ng process (WAV on stdout, no temporary file)."""
    command = _espeak_command(text, voice, rate, pitch, word_gap, pitch_range)
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed ({result.returncode}) for voice {voice!r}: {message}")
    audio, sample_rate = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    return audio[:, 0], int(sample_rate)


def _resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return audio.astype(np.float32)
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def synthesize_sentence(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, int]:
    """Clean speech for ``text`` (espeak-ng's own silences kept): float32 samples and their rate."""
    audio, native_rate = run_espeak(text, voice, rate, pitch)
    return _resample(audio, native_rate, sample_rate), sample_rate


# ---------------------------------------------------------------------------- signal processing


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def _trim_silence(audio: np.ndarray, sample_rate: int, relative_threshold: float = 0.01) -> np.ndarray:
    """Cut espeak's leading/trailing silence (keeping 10 ms) so the added silence is exact."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    loud = np.flatnonzero(np.abs(audio) > relative_threshold * peak) if peak > 0 else np.array([], int)
    if loud.size == 0:
        return audio
    margin = sample_rate // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def _fft_size(n: int) -> int:
    return 1 << max(1, (n - 1).bit_length())


def colored_noise(num_samples: int, color: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Unit-RMS noise: white (flat), pink (power ~ 1/f) or brown (power ~ 1/f^2)."""
    if num_samples == 0:
        return np.zeros(0, np.float32)
    if color == "white":
        noise = rng.standard_normal(num_samples, dtype=np.float32)
    else:
        amplitude_exponent = {"pink": 0.5, "brown": 1.0}[color]
        size = _fft_size(num_samples)
        spectrum = np.fft.rfft(rng.standard_normal(size, dtype=np.float32))
        # Below 20 Hz the shaping stops, or brown noise would be all DC drift.
        spectrum *= np.maximum(np.fft.rfftfreq(size, 1.0 / sample_rate), 20.0) ** -amplitude_exponent
        noise = np.fft.irfft(spectrum, size)[:num_samples]
    return (noise / max(_rms(noise), 1e-12)).astype(np.float32)


def telephone_band(audio: np.ndarray, sample_rate: int, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    """Band-limit to the telephone channel (300-3400 Hz) with gentle FFT-domain ramps."""
    size = _fft_size(len(audio) * 2)  # zero padding: no wrap-around of the filter's ringing
    frequencies = np.fft.rfftfreq(size, 1.0 / sample_rate)
    gain = np.clip((frequencies - 0.6 * low) / (0.4 * low), 0.0, 1.0) * np.clip(
        (1.08 * high - frequencies) / (0.08 * high), 0.0, 1.0
    )
    return np.fft.irfft(np.fft.rfft(audio, size) * gain, size)[: len(audio)].astype(np.float32)


def mulaw_roundtrip(audio: np.ndarray, mu: int = 255) -> np.ndarray:
    """Encode to 8-bit mu-law and back: the quantization noise of G.711 telephone audio."""
    x = np.clip(audio, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantized = np.round((encoded + 1.0) * 127.5) / 127.5 - 1.0
    return (np.sign(quantized) * np.expm1(np.abs(quantized) * np.log1p(mu)) / mu).astype(np.float32)


def _db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


# ---------------------------------------------------------------------------- utterance plans


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything needed to render one utterance; drawn in the parent, rendered in a worker."""

    number: int
    text: str
    source: str
    spoken: str  # what espeak reads: the text plus end punctuation for intonation
    voice: str
    rate: int
    pitch: int
    pitch_range: int | None
    word_gap: int
    sample_rate: int
    level_db: float  # speech RMS, dBFS
    noise: str
    snr_db: float | None
    floor_db: float  # noise floor RMS under everything, dBFS
    lead_s: float
    trail_s: float
    mulaw: bool
    noise_seed: int

    @property
    def audio_path(self) -> str:
        return f"audio/{self.number:07d}.wav"


def utterance_rng(seed: int, number: int, purpose: str) -> random.Random:
    """An independent generator per (seed, utterance, purpose), stable across processes."""
    digest = hashlib.blake2b(f"{seed}:{number}:{purpose}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _spoken_text(text: str, rng: random.Random) -> str:
    """Add end punctuation so espeak varies intonation (questions rise); the reference has none."""
    first = text.split(" ", 1)[0]
    if first in _QUESTION_STARTERS and rng.random() < 0.85:
        return text + "?"
    return text + "." if rng.random() < 0.5 else text


def plan_utterance(
    seed: int, number: int, split: Split, text: str, source: str, voices: Sequence[str]
) -> UtteranceSpec:
    """Draw the synthesis parameters of utterance ``number`` from its own generator."""
    rng = utterance_rng(seed, number, f"audio-{split}")
    (noise,) = rng.choices(NOISE_TYPES, weights=NOISE_WEIGHTS)
    (sample_rate,) = rng.choices(SAMPLE_RATES, weights=SAMPLE_RATE_WEIGHTS)
    return UtteranceSpec(
        number=number,
        text=text,
        source=source,
        spoken=_spoken_text(text, rng),
        voice=rng.choice(voices),
        rate=rng.randint(120, 220),
        pitch=rng.randint(20, 80),
        pitch_range=rng.randint(30, 180) if rng.random() < 0.5 else None,
        word_gap=rng.randint(1, 6) if rng.random() < 0.2 else 0,
        sample_rate=sample_rate,
        level_db=round(rng.uniform(-36.0, -14.0), 2),
        noise=noise,
        snr_db=None if noise == "none" else round(rng.uniform(5.0, 40.0), 2),
        floor_db=round(rng.uniform(-85.0, -60.0), 2),
        lead_s=round(rng.uniform(0.0, 0.8), 3),
        trail_s=round(rng.uniform(0.0, 0.8), 3),
        mulaw=sample_rate == 8000 and rng.random() < 0.5,
        noise_seed=rng.getrandbits(63),
    )


def render_utterance(spec: UtteranceSpec) -> np.ndarray:
    """The utterance's samples (float32 in [-1, 1]) at ``spec.sample_rate``."""
    prosody = (spec.rate, spec.pitch, spec.word_gap, spec.pitch_range)
    try:
        speech, native_rate = run_espeak(spec.spoken, spec.voice, *prosody)
    except RuntimeError:
        # espeak-ng 1.51 occasionally crashes (SIGSEGV) on a variant/text pair; the base voice
        # of the same accent works, and the fallback keeps the data set deterministic.
        base_voice = spec.voice.split("+")[0]
        speech, native_rate = run_espeak(spec.spoken, base_voice, *prosody)
    speech = _resample(_trim_silence(speech, native_rate), native_rate, spec.sample_rate)
    speech *= _db_to_gain(spec.level_db) / max(_rms(speech), 1e-9)
    speech_rms = _rms(speech)

    lead = round(spec.lead_s * spec.sample_rate)
    trail = round(spec.trail_s * spec.sample_rate)
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])

    noise_rng = np.random.default_rng(spec.noise_seed)
    if spec.snr_db is not None:
        noise = colored_noise(len(audio), spec.noise, noise_rng, spec.sample_rate)
        audio += noise * (speech_rms / _db_to_gain(spec.snr_db))
    if spec.sample_rate == 8000:  # the channel filters speech and noise alike
        audio = telephone_band(audio, spec.sample_rate)
    # A microphone never records digital silence: a faint white floor under everything.
    audio += colored_noise(len(audio), "white", noise_rng, spec.sample_rate) * _db_to_gain(spec.floor_db)
    if spec.mulaw:
        audio = mulaw_roundtrip(audio)
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:  # scale the whole mix (not clip) so the SNR stays as drawn
        audio *= 0.99 / peak
    return audio.astype(np.float32)


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def _render_task(task: tuple[UtteranceSpec, str, str, int]) -> dict | None:
    """Worker: render one utterance, write its WAV, return its manifest line (None: espeak-ng failed).

    ``render_utterance`` already retries a crashed variant with its base voice; should that
    fail too, one utterance must not end a 30,000-utterance run.
    """
    spec, out_dir, split, seed = task
    try:
        audio = render_utterance(spec)
    except RuntimeError as error:
        log.warning("skipped utterance %d: %s", spec.number, error)
        return None
    sf.write(os.path.join(out_dir, spec.audio_path), _to_pcm16(audio), spec.sample_rate, subtype="PCM_16")
    return {
        "audio": spec.audio_path,
        "text": spec.text,
        "language": LANGUAGE,
        "duration": round(len(audio) / spec.sample_rate, 4),
        "voice": spec.voice,
        "sample_rate": spec.sample_rate,
        "rate": spec.rate,
        "pitch": spec.pitch,
        "pitch_range": spec.pitch_range,
        "word_gap": spec.word_gap,
        "level_db": spec.level_db,
        "noise": spec.noise,
        "snr_db": spec.snr_db,
        "floor_db": spec.floor_db,
        "lead_s": spec.lead_s,
        "trail_s": spec.trail_s,
        "mulaw": spec.mulaw,
        "source": spec.source,
        "split": split,
        "seed": seed,
        "index": spec.number,
    }


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
            skipped = _write_rows(map(_render_task, tasks), sink, bar)
        else:
            # spawn: workers never inherit the parent's threads (torch) or its 450 MB Markov model.
            with multiprocessing.get_context("spawn").Pool(jobs) as pool:
                skipped = _write_rows(pool.imap(_render_task, tasks, chunksize=4), sink, bar)
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
