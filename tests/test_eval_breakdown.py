"""asr-train eval breaks its scores down per language and per TTS engine when the manifest says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from asr_harness import requires_espeak, synthesize

from server.search.loading import load_model_and_search
from training.evaluate import evaluate
from training.manifest import read_manifest

pytestmark = requires_espeak


def test_scores_per_language_and_per_engine(random_model_dir: Path, tmp_path: Path) -> None:
    rows = [("please call me back", "en", "espeak"), ("bitte rufen sie an", "de", "pico"), ("thank you", "en", "")]
    with (tmp_path / "manifest.jsonl").open("w") as manifest:
        for index, (text, language, engine) in enumerate(rows):
            pcm, rate = synthesize(text)
            sf.write(tmp_path / f"{index}.wav", np.frombuffer(pcm, dtype="<i2"), rate)
            row = {"audio": f"{index}.wav", "text": text, "language": language}
            if engine:
                row["engine"] = engine
            manifest.write(json.dumps(row) + "\n")
    assert [u.engine for u in read_manifest(tmp_path / "manifest.jsonl")] == ["espeak", "pico", ""]
    model, search = load_model_and_search(random_model_dir)
    summary = evaluate(model, search, tmp_path / "manifest.jsonl", streaming=True, print_lines=False)
    assert summary["utterances"] == 3
    assert sorted(summary["per_language"]) == ["de", "en"]
    assert sorted(summary["per_engine"]) == ["espeak", "pico"]  # rows without an engine count only overall
    assert all(scores["wer"] >= 0 for scores in summary["per_engine"].values())
