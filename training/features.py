"""Feature cache: the fbank of every manifest utterance, computed once, stored as float16.

Training reads features from one memory-mapped array instead of decoding and resampling
audio every epoch (two CPU cores cannot afford that next to the model).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soxr
from tqdm import tqdm

from server.model.config import FeatureConfig
from server.model.frontend import compute_fbank
from training.manifest import Utterance, read_audio, read_manifest

FEATURES_FILE = "features.f16.npy"
INDEX_FILE = "index.json"


def perturb_speed(samples: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """Play (N,) float32 ``samples`` ``factor`` times faster, tempo and pitch together (sox's
    ``speed``, as in Kaldi/icefall recipes): resample to ``rate / factor`` and keep calling it ``rate``."""
    return soxr.resample(samples, rate, rate / factor).astype(np.float32)


def _fbank_of(job: tuple[Utterance, float, FeatureConfig]) -> np.ndarray:
    utterance, speed, config = job
    samples, rate = read_audio(utterance.audio)
    if speed != 1.0:
        samples = perturb_speed(samples, rate, speed)
    return compute_fbank(samples, rate, config).astype(np.float16)


def speed_cache_dir(cache_dir: Path, speed: float) -> Path:
    """Where the copy of a cache at another ``speed`` lives: ``features-train-speed0.9``."""
    cache_dir = Path(cache_dir)
    return cache_dir if speed == 1.0 else cache_dir.with_name(f"{cache_dir.name}-speed{speed:g}")


def build_feature_cache(
    manifest: Path, cache_dir: Path, jobs: int = 2, speed: float = 1.0, features: FeatureConfig | None = None
) -> Path:
    """Compute the front end's features (``features``, default Kaldi fbank) for every utterance of
    ``manifest`` into ``cache_dir`` (skipped if present).

    ``speed`` != 1 caches the speed-perturbed audio instead (``perturb_speed``).
    """
    cache_dir = Path(cache_dir)
    features = features or FeatureConfig()
    if (cache_dir / INDEX_FILE).is_file():
        index = json.loads((cache_dir / INDEX_FILE).read_text())
        cached_from, cached_kind = index["manifest"], index.get("features", "kaldi")
        if cached_kind != features.kind:
            raise ValueError(f"{cache_dir} holds {cached_kind} features, the model reads {features.kind}")
        if Path(cached_from).resolve() != Path(manifest).resolve():
            # A cache silently reused for another manifest would train on the wrong data.
            raise ValueError(
                f"{cache_dir} holds the features of {cached_from}, not of {manifest}: "
                f"remove it or use another --exp-dir"
            )
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    utterances = read_manifest(manifest)
    with Pool(jobs) as pool:
        jobs_list = [(utterance, speed, features) for utterance in utterances]
        feats = list(
            tqdm(
                pool.imap(_fbank_of, jobs_list, chunksize=16),
                total=len(utterances),
                desc=f"fbank {manifest.name} speed {speed:g}",
            )
        )
    lengths = [f.shape[0] for f in feats]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    np.save(cache_dir / FEATURES_FILE, np.concatenate(feats))
    index = {
        "manifest": str(manifest),
        "offsets": offsets,
        "speed": speed,
        "features": features.kind,
        "texts": [u.text for u in utterances],
        "languages": [u.language for u in utterances],
        "pieces": [None if u.pieces is None else list(u.pieces) for u in utterances],
    }
    (cache_dir / INDEX_FILE).write_text(json.dumps(index))
    return cache_dir


class FeatureCache:
    """Random access to cached features: ``cache[i]`` -> (T_i, 80) float16 view."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        index = json.loads((self.cache_dir / INDEX_FILE).read_text())
        self.features = np.load(self.cache_dir / FEATURES_FILE, mmap_mode="r")
        self.offsets: list[int] = index["offsets"]
        self.texts: list[str] = index["texts"]
        self.languages: list[str] = index["languages"]
        # Targets written out as pieces (t-SOT rows), else None; caches older than this field: none.
        self.pieces: list[list[str] | None] = index.get("pieces") or [None] * len(self.texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.features[self.offsets[i] : self.offsets[i + 1]]

    def length(self, i: int) -> int:
        return self.offsets[i + 1] - self.offsets[i]

    def mean_std(self, max_frames: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
        """Global CMVN statistics over (up to) the first ``max_frames`` frames."""
        sample = np.asarray(self.features[:max_frames], dtype=np.float64)
        return sample.mean(axis=0).astype(np.float32), np.maximum(sample.std(axis=0), 1e-3).astype(np.float32)


class ConcatenatedCaches:
    """Several caches as one data set (training sets and their speed-perturbed copies).

    Same interface as ``FeatureCache``; utterance i of cache c has index sum(len of earlier) + i.
    """

    def __init__(self, caches: list[FeatureCache]) -> None:
        if not caches:
            raise ValueError("no caches to concatenate")
        self.caches = caches
        self.starts = np.cumsum([0] + [len(c) for c in caches]).tolist()
        self.texts = [text for cache in caches for text in cache.texts]
        self.languages = [language for cache in caches for language in cache.languages]
        self.pieces = [pieces for cache in caches for pieces in cache.pieces]

    def __len__(self) -> int:
        return self.starts[-1]

    def _locate(self, i: int) -> tuple[FeatureCache, int]:
        which = bisect.bisect_right(self.starts, i) - 1
        return self.caches[which], i - self.starts[which]

    def __getitem__(self, i: int) -> np.ndarray:
        cache, j = self._locate(i)
        return cache[j]

    def length(self, i: int) -> int:
        cache, j = self._locate(i)
        return cache.length(j)

    def mean_std(self, max_frames: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
        """CMVN of the first cache (the first training set's unperturbed audio)."""
        return self.caches[0].mean_std(max_frames)


def set_cache_dir(cache_dir: Path, set_number: int) -> Path:
    """Where the cache of the n-th training manifest lives: the first in ``cache_dir``, then ``…-set2``."""
    cache_dir = Path(cache_dir)
    return cache_dir if set_number == 1 else cache_dir.with_name(f"{cache_dir.name}-set{set_number}")


def training_features(
    manifests: Path | Sequence[Path],
    cache_dir: Path,
    jobs: int,
    speeds: list[float],
    features: FeatureConfig | None = None,
) -> FeatureCache | ConcatenatedCaches:
    """The training sets' cached features, each with a copy per extra speed factor (1.0 is always in).

    Several manifests (a data set synthesized later, say) are one training set; each keeps its own
    cache, so adding a manifest never rebuilds the caches of the earlier ones.
    """
    manifests = [Path(manifests)] if isinstance(manifests, (str, Path)) else [Path(m) for m in manifests]
    factors = [1.0] + sorted({s for s in speeds if s != 1.0})
    caches = [
        FeatureCache(
            build_feature_cache(manifest, speed_cache_dir(set_cache_dir(cache_dir, number), s), jobs, s, features)
        )
        for number, manifest in enumerate(manifests, 1)
        for s in factors
    ]
    return caches[0] if len(caches) == 1 else ConcatenatedCaches(caches)
