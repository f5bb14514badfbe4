"""The French real-speech dev set: Asterisk's Canadian French prompts (one human speaker, "June", 8 kHz).

Source: the Debian packages ``asterisk-core-sounds-fr-wav`` (the recordings, under
``/usr/share/asterisk/sounds/fr_CA_f_June/``, some in sub-folders such as ``dictate/``) and
``asterisk-core-sounds-fr`` (its documentation folder holds the transcripts,
``/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz``, one ``name: text`` line per prompt):
``apt-get install asterisk-core-sounds-fr-wav asterisk-core-sounds-fr``. Licence: CC-BY-SA-3.0
(recorded by June Wallack, translated by Clod Patry; the package's copyright file). 525 transcripts:
449 prompts kept (15.3 min), 69 with digits or brackets dropped, 7 without a recording.

Prompts whose transcript has a digit (spoken forms are ambiguous: "1" may be "un" or "une") or a
bracket (``[ascending tones]``, ``(ahooga)``: sound effects, not words) are dropped, as are prompts
without a recording. The manifest (``DIR/manifest.jsonl``, JSON lines ``{"audio": absolute path,
"text": reference, "language": "fr", "duration": seconds, "id": prompt name, "raw": transcript}``)
keeps accents in ``text``; but score it **accent-insensitively** (``fold_accents`` both sides),
since some transcripts lack accents that the speaker says (``présentemnet``, ``vérrouiller``,
"Vous avez entrer" are typed as is). It is for measuring only: **never train or tune on it**.
Only the French package is ours to use; the other Asterisk sound packages are reserved for hidden tests.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import unicodedata
from pathlib import Path

import soundfile as sf

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/fr_CA_f_June")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^\w']+")  # \w keeps accented letters; hyphens and punctuation become spaces
_EXCLUDED = re.compile(r"[\d\[\]()]")


def read_transcripts(path: Path = TRANSCRIPTS) -> dict[str, str]:
    """Prompt name (``auth-thankyou``, ``dictate/pause``) -> transcript, from the gzipped ``name: text`` list."""
    transcripts: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(";") or ":" not in line:
                continue  # comments and blank lines
            name, text = line.split(":", 1)
            transcripts[name.strip()] = text.strip()
    return transcripts


def normalize_french(text: str) -> str:
    """Lowercase words (accents and intra-word apostrophes kept), hyphens and punctuation removed."""
    text = unicodedata.normalize("NFC", text.translate(_APOSTROPHES)).casefold()
    words = _NOT_WORD.sub(" ", text).replace("_", " ").split()
    return " ".join(word.strip("'") for word in words if word.strip("'"))


def fold_accents(text: str) -> str:
    """``text`` without diacritics (é -> e, ç -> c): apply to reference and hypothesis before scoring."""
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def usable(transcript: str) -> bool:
    """Whether a prompt belongs in the dev set: some words, and no digit or bracket."""
    return bool(normalize_french(transcript)) and not _EXCLUDED.search(transcript)


def build_manifest(out_dir: Path, sounds_dir: Path = SOUNDS_DIR, transcripts: Path = TRANSCRIPTS) -> Path:
    """Write ``out_dir/manifest.jsonl`` (sorted by prompt name) and return its path."""
    if not sounds_dir.is_dir() or not transcripts.exists():
        raise FileNotFoundError(
            f"{sounds_dir} or {transcripts} missing: "
            "apt-get install asterisk-core-sounds-fr-wav asterisk-core-sounds-fr"
        )
    rows = []
    for name, raw in sorted(read_transcripts(transcripts).items()):
        audio = sounds_dir / f"{name}.wav"
        if not usable(raw) or not audio.exists():
            continue
        info = sf.info(str(audio))
        rows.append(
            {
                "audio": str(audio.resolve()),
                "text": normalize_french(raw),
                "language": "fr",
                "duration": round(info.frames / info.samplerate, 3),
                "id": name,
                "raw": raw,
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asr-train devset-asterisk-fr``."""
    parser.add_argument("--out", type=Path, required=True, help="output folder (manifest.jsonl)")
    parser.add_argument("--sounds-dir", type=Path, default=SOUNDS_DIR, help="the package's recordings")
    parser.add_argument("--transcripts", type=Path, default=TRANSCRIPTS, help="core-sounds-fr.txt.gz")


def run(args: argparse.Namespace) -> int:
    """Build the manifest and print its size."""
    manifest = build_manifest(args.out, args.sounds_dir, args.transcripts)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    hours = sum(row["duration"] for row in rows) / 3600
    print(f"wrote {manifest}: {len(rows)} prompts, {hours * 60:.1f} min")
    return 0
