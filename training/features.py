"""Feature cache: the fbank of every manifest utterance, computed once, stored as float16.

Training reads features from one memory-mapped array instead of decoding and resampling
audio every epoch (two CPU cores cannot afford that next to the model).
"""

from __future__ import annotations

import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from server.model.frontend import compute_fbank
from training.manifest import Utterance, read_audio, read_manifest

FEATURES_FILE = "features.f16.npy"
INDEX_FILE = "index.json"


def _fbank_of(utterance: Utterance) -> np.ndarray:
    samples, rate = read_audio(utterance.audio)
    return compute_fbank(samples, rate).astype(np.float16)


def build_feature_cache(manifest: Path, cache_dir: Path, jobs: int = 2) -> Path:
    """Compute fbank for every utterance of ``manifest`` into ``cache_dir`` (skipped if present)."""
    cache_dir = Path(cache_dir)
    if (cache_dir / INDEX_FILE).is_file():
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    utterances = read_manifest(manifest)
    with Pool(jobs) as pool:
        feats = list(tqdm(pool.imap(_fbank_of, utterances, chunksize=16), total=len(utterances),
                          desc=f"fbank {manifest.name}"))
    lengths = [f.shape[0] for f in feats]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    np.save(cache_dir / FEATURES_FILE, np.concatenate(feats))
    index = {"manifest": str(manifest), "offsets": offsets,
             "texts": [u.text for u in utterances], "languages": [u.language for u in utterances]}
    (cache_dir / INDEX_FILE).write_text(json.dumps(index))
    return cache_dir


class FeatureCache:
    """Random access to cached features: ``cache[i]`` -> (T_i, 80) float16 view."""

    def __init__(self, cache_dir: Path) -> None:
        index = json.loads((Path(cache_dir) / INDEX_FILE).read_text())
        self.features = np.load(Path(cache_dir) / FEATURES_FILE, mmap_mode="r")
        self.offsets: list[int] = index["offsets"]
        self.texts: list[str] = index["texts"]
        self.languages: list[str] = index["languages"]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.features[self.offsets[i]: self.offsets[i + 1]]

    def length(self, i: int) -> int:
        return self.offsets[i + 1] - self.offsets[i]

    def mean_std(self, max_frames: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
        """Global CMVN statistics over (up to) the first ``max_frames`` frames."""
        sample = np.asarray(self.features[:max_frames], dtype=np.float64)
        return sample.mean(axis=0).astype(np.float32), np.maximum(sample.std(axis=0), 1e-3).astype(np.float32)
