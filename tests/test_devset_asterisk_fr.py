"""The French dev-set manifest from Asterisk-style prompts: a fake package written here, the real one if installed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.devsets import asterisk_fr

LINES = """; Core Asterisk Sounds in French

auth-thankyou: Merci.
agent-pass: Composez votre mot de passe suivi du dièse.
conf-menu: Pour quitter, appuyez sur 8.
beeperr: (ahooga)
tones: [ascending tones]
dictate/pause: pause
missing-file: Bonjour
"""


def test_manifest_drops_digits_brackets_and_missing_audio(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    (sounds / "dictate").mkdir(parents=True)
    for name in ("auth-thankyou", "agent-pass", "conf-menu", "beeperr", "tones", "dictate/pause"):
        sf.write(sounds / f"{name}.wav", np.zeros(8000, np.int16), 8000, subtype="PCM_16")
    transcripts = tmp_path / "core-sounds-fr.txt.gz"
    with gzip.open(transcripts, "wt", encoding="utf-8") as handle:
        handle.write(LINES)
    manifest = asterisk_fr.build_manifest(tmp_path / "out", sounds, transcripts)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == ["agent-pass", "auth-thankyou", "dictate/pause"]
    assert rows[0]["text"] == "composez votre mot de passe suivi du dièse"
    assert all(row["language"] == "fr" and row["duration"] == 1.0 and Path(row["audio"]).is_file() for row in rows)


def test_accent_folding_and_normalisation() -> None:
    assert asterisk_fr.normalize_french("Rappelez-moi, l’agent « Éric »!") == "rappelez moi l'agent éric"
    assert asterisk_fr.fold_accents("présentement dièse français") == "presentement diese francais"


@pytest.mark.skipif(not asterisk_fr.TRANSCRIPTS.exists(), reason="asterisk-core-sounds-fr not installed")
def test_real_package(tmp_path: Path) -> None:
    rows = asterisk_fr.build_manifest(tmp_path).read_text(encoding="utf-8").splitlines()
    assert len(rows) == 449
