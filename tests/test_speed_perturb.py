"""Speed perturbation: cached copies of the training set at other speeds, used as one data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.features import ConcatenatedCaches, FeatureCache, training_features


def _tone_manifest(tmp_path: Path) -> Path:
    rows = []
    for index, (seconds, hz) in enumerate([(1.0, 440.0), (1.6, 880.0)]):
        t = np.arange(int(seconds * 16000)) / 16000
        path = tmp_path / f"tone{index}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
        rows.append(json.dumps({"audio": path.name, "text": f"tone number {index}"}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_speed_copies_change_duration_and_pitch_and_join_one_data_set(tmp_path: Path) -> None:
    manifest = _tone_manifest(tmp_path)
    data = training_features(manifest, tmp_path / "exp" / "features-train", jobs=1, speeds=[0.9, 1.1])
    assert isinstance(data, ConcatenatedCaches) and len(data) == 6
    assert data.texts == ["tone number 0", "tone number 1"] * 3
    assert (tmp_path / "exp" / "features-train-speed0.9").is_dir()
    plain = FeatureCache(tmp_path / "exp" / "features-train")
    for i in range(2):
        # Factor 0.9 plays slower (longer), 1.1 faster (shorter): the lengths scale by 1 / factor.
        assert abs(data.length(2 + i) - plain.length(i) / 0.9) <= 2
        assert abs(data.length(4 + i) - plain.length(i) / 1.1) <= 2
        assert data[4 + i].shape == (data.length(4 + i), 80)

    # Pitch moves with speed: the tone's loudest mel bin is higher in the faster copy.
    def peak_bin(features: np.ndarray) -> int:
        return int(np.asarray(features, dtype=np.float32).mean(axis=0).argmax())

    assert peak_bin(data[4]) > peak_bin(data[0]) > peak_bin(data[2])


def test_no_speeds_is_the_plain_cache(tmp_path: Path) -> None:
    data = training_features(_tone_manifest(tmp_path), tmp_path / "features-train", jobs=1, speeds=[])
    assert isinstance(data, FeatureCache) and len(data) == 2


def test_several_manifests_are_one_training_set_with_a_cache_each(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    manifests = [_tone_manifest(first), _tone_manifest(second)]
    data = training_features(manifests, tmp_path / "exp" / "features-train", jobs=1, speeds=[0.9])
    assert isinstance(data, ConcatenatedCaches) and len(data) == 8
    # Order: each manifest, each at every speed, so a later set never shifts an earlier one's indices.
    assert [len(cache) for cache in data.caches] == [2, 2, 2, 2]
    for name in ("features-train", "features-train-speed0.9", "features-train-set2", "features-train-set2-speed0.9"):
        assert (tmp_path / "exp" / name / "index.json").is_file()
    assert np.array_equal(data[0], data[4])  # the same tones: the same features


def test_a_cache_is_never_reused_for_another_manifest(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    training_features(_tone_manifest(tmp_path / "a"), tmp_path / "features-train", jobs=1, speeds=[])
    with pytest.raises(ValueError, match="holds the features of"):
        training_features(_tone_manifest(tmp_path / "b"), tmp_path / "features-train", jobs=1, speeds=[])
