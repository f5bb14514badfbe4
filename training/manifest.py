"""Manifests: JSON lines ``{"audio": path, "text": reference, "language": "en"}``.

A row may also carry ``tsot_pieces``, its training target as tokenizer pieces (t-SOT mixtures).

Relative audio paths are resolved against the manifest's folder, so a data set can be moved
as a whole. Audio is anything soundfile reads, at any sample rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class Utterance:
    audio: Path
    text: str
    language: str = "en"
    engine: str = ""  # the TTS engine that spoke it, where the manifest says (per-engine scores)
    # The target as tokenizer pieces, where the manifest writes it out (``tsot_pieces``: two
    # talkers serialized with ``<cc>``, training.tsot.mix); None: the tokenized ``text``.
    pieces: tuple[str, ...] | None = None


def read_manifest(path: Path) -> list[Utterance]:
    """Parse a manifest; raises ValueError naming the line that is wrong."""
    path = Path(path)
    utterances = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            audio = Path(entry["audio"])
            text = str(entry["text"])
            pieces = None if entry.get("tsot_pieces") is None else tuple(str(p) for p in entry["tsot_pieces"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a manifest line ({error})") from error
        if not audio.is_absolute():
            audio = path.parent / audio
        language, engine = str(entry.get("language", "en")), str(entry.get("engine", ""))
        utterances.append(Utterance(audio=audio, text=text, language=language, engine=engine, pieces=pieces))
    return utterances


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the file's sample rate."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return samples.mean(axis=1), rate
