"""The frozen prefix cache: each training utterance's output of the encoder's frozen lower part, computed once.

``fit --freeze-encoder-layers N`` keeps the stem and the first N blocks as they are, without dropout,
and their language experts silent (their up-projections start at zero and stay there). What those
layers give an utterance under the serving mask is then a fixed function of its features, so
``fit --cache-frozen-prefix`` computes it once (``build_prefix_cache``) and trains the blocks above
on it (docs/decisions/0026-frozen-prefix-cache.md).

A cache lives beside the feature cache it was computed from: one per training manifest (and speed
copy), so a manifest added later computes only its own. Its index holds a fingerprint of
everything the prefix depends on (the frozen weights and buffers, N, the serving mask, the source
cache); a cache of other weights or another N is rebuilt, never reused, and an interrupted build
goes on where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from server.model.conformer import Subsampling
from server.model.encoder import ConformerEncoder
from server.model.language_experts import LanguageExperts
from server.model.transducer import StreamingTransducer
from training.batching import bucketed_batches, pad_frames
from training.features import FEATURES_FILE, INDEX_FILE, ConcatenatedCaches, FeatureCache

__all__ = ["PrefixCache", "build_prefix_cache", "prefix_fingerprint"]

# Bump when what a cache holds changes meaning (part of the fingerprint).
FORMAT_VERSION = 1
SAVE_EVERY_SECONDS = 60.0


class PrefixCache(FeatureCache):
    """Random access to cached prefixes: ``cache[i]`` -> (T'_i, D) float16 view, utterance i's encoder
    state after its first ``num_layers`` blocks (the features' place in ``FeatureCache``'s interface;
    ``length`` counts encoder frames)."""

    def __init__(self, cache_dir: Path) -> None:
        index = json.loads((Path(cache_dir) / INDEX_FILE).read_text())
        if not index.get("complete"):
            raise ValueError(f"{cache_dir} is not a complete prefix cache (build_prefix_cache goes on with it)")
        super().__init__(cache_dir)
        self.num_layers: int = index["num_layers"]
        self.fingerprint: str = index["fingerprint"]


def _frozen_modules(encoder: ConformerEncoder, num_layers: int) -> list[tuple[str, nn.Module]]:
    """The modules ``forward_prefix(num_layers)`` runs, by name."""
    modules: list[tuple[str, nn.Module]] = [("subsampling", encoder.subsampling)]
    modules += [(f"layers.{i}", encoder.layers[i]) for i in range(num_layers)]
    if encoder.experts is not None:
        modules += [(f"experts.{i}", encoder.experts[i]) for i in range(num_layers)]
    return modules


def prefix_fingerprint(model: StreamingTransducer, num_layers: int, source: FeatureCache) -> str:
    """sha256 over what the prefix of ``source``'s utterances depends on: the bytes of the stem's and the
    first ``num_layers`` blocks' (and experts') parameters and buffers, the CMVN and position buffers,
    ``num_layers``, the serving mask, the front end, and the source cache (its directory and index)."""
    encoder = model.encoder
    config = encoder.config
    digest = hashlib.sha256()
    setup = {
        "version": FORMAT_VERSION,
        "num_layers": num_layers,
        "mask": [config.chunk_size, config.left_chunks, config.right_context],
        "frontend": config.frontend,
        "source": str(source.cache_dir.resolve()),
    }
    digest.update(json.dumps(setup, sort_keys=True).encode())
    digest.update((source.cache_dir / INDEX_FILE).read_bytes())
    tensors = [(name, buffer) for name, buffer in encoder.named_buffers(recurse=False) if buffer is not None]
    for prefix, module in _frozen_modules(encoder, num_layers):
        tensors += [(f"{prefix}.{name}", tensor) for name, tensor in module.state_dict().items()]
    for name, tensor in tensors:
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_silent_experts(encoder: ConformerEncoder, num_layers: int) -> None:
    """A cache holds one prefix per utterance, whatever language mask a batch draws: the frozen
    blocks' language experts must add nothing (as a Whisper-initialised model's do, frozen at zero)."""
    if encoder.experts is None:
        return
    for index in range(num_layers):
        experts = encoder.experts[index]
        assert isinstance(experts, LanguageExperts)
        if bool(experts.up.any()) or bool(experts.bias.any()):
            raise ValueError(
                f"block {index}'s language experts are not zero: the frozen prefix depends on the language "
                "mask, so it cannot be cached (train without --cache-frozen-prefix)"
            )


def build_prefix_cache(
    model: StreamingTransducer,
    features: FeatureCache | ConcatenatedCaches,
    num_layers: int,
    cache_dir: Path,
    batch_frames: int = 30000,
) -> PrefixCache | ConcatenatedCaches:
    """``model.encoder.forward_prefix(num_layers)`` (serving mask, eval mode, no gradients) of every
    utterance of ``features``, as float16, in ``cache_dir / <feature cache's directory name>`` (one
    cache per feature cache: per manifest and speed). ``batch_frames``: fbank frames per batch.

    A cache whose fingerprint matches is reused, a partial one is completed, any other rebuilt.
    Returns the caches in the order of ``features`` (several: concatenated, as ``features`` are).
    """
    _check_silent_experts(model.encoder, num_layers)
    sources = features.caches if isinstance(features, ConcatenatedCaches) else [features]
    caches = [
        _build_one(model, source, num_layers, Path(cache_dir) / source.cache_dir.name, batch_frames)
        for source in sources
    ]
    return caches[0] if len(caches) == 1 else ConcatenatedCaches(list(caches))


def _write_index(cache_dir: Path, index: dict[str, Any]) -> None:
    """The index, replaced atomically (a build killed mid-write leaves the previous one)."""
    partial = cache_dir / (INDEX_FILE + ".partial")
    partial.write_text(json.dumps(index))
    partial.replace(cache_dir / INDEX_FILE)


def _build_one(
    model: StreamingTransducer, source: FeatureCache, num_layers: int, cache_dir: Path, batch_frames: int
) -> PrefixCache:
    fingerprint = prefix_fingerprint(model, num_layers, source)
    index_file = cache_dir / INDEX_FILE
    stored: dict[str, Any] | None = json.loads(index_file.read_text()) if index_file.is_file() else None
    if stored is not None and stored["fingerprint"] == fingerprint and stored["complete"]:
        return PrefixCache(cache_dir)
    fbank_lengths = [source.length(i) for i in range(len(source))]
    lengths = Subsampling.output_length(torch.tensor(fbank_lengths, dtype=torch.int64)).tolist()
    # Utterances too short for one encoder frame have nothing to compute (and the stem could not run).
    todo = [i for i in range(len(source)) if lengths[i] > 0]
    # The same batches in the same order on every try, so that a build can go on where it stopped.
    batches = [
        [todo[j] for j in batch]
        for batch in bucketed_batches([fbank_lengths[i] for i in todo], batch_frames, random.Random(0))
    ]
    frames_file = cache_dir / FEATURES_FILE
    if (
        stored is not None
        and stored["fingerprint"] == fingerprint
        and stored["batch_frames"] == batch_frames
        and frames_file.is_file()
    ):
        index = stored  # a build that stopped part way: go on
    else:
        index = {
            "fingerprint": fingerprint,
            "num_layers": num_layers,
            "source": str(source.cache_dir),
            "offsets": np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).tolist(),
            "texts": source.texts,
            "languages": source.languages,
            "pieces": source.pieces,
            "batch_frames": batch_frames,  # what the batches, so what "batches_done" counts, depend on
            "batches_done": 0,
            "complete": False,
        }
        cache_dir.mkdir(parents=True, exist_ok=True)
        rows = int(index["offsets"][-1])
        frames_file.unlink(missing_ok=True)  # a new file: whoever still reads the stale one keeps it
        np.lib.format.open_memmap(frames_file, mode="w+", dtype=np.float16, shape=(rows, model.config.encoder.d_model))
        _write_index(cache_dir, index)
    offsets: list[int] = index["offsets"]
    out = np.load(frames_file, mmap_mode="r+")
    done: int = index["batches_done"]
    encoder = model.encoder
    device = encoder.feature_mean.device
    was_training = model.training
    model.eval()
    progress = tqdm(
        total=len(todo),
        initial=sum(len(b) for b in batches[:done]),
        desc=f"frozen prefix ({num_layers} blocks) {source.cache_dir.name}",
        dynamic_ncols=True,
    )
    last_save = time.monotonic()
    try:
        with torch.no_grad():
            for number in range(done, len(batches)):
                indices = batches[number]
                feats, feat_lengths = pad_frames([source[i] for i in indices])
                prefix, prefix_lengths = encoder.forward_prefix(feats.to(device), feat_lengths.to(device), num_layers)
                prefix16 = prefix.float().cpu().numpy().astype(np.float16)
                for row, i in enumerate(indices):
                    utterance = prefix16[row, : int(prefix_lengths[row])]
                    if not np.isfinite(utterance).all():
                        raise ValueError(f"the frozen prefix of {source.cache_dir} [{i}] overflows float16")
                    out[offsets[i] : offsets[i + 1]] = utterance
                progress.update(len(indices))
                if time.monotonic() - last_save > SAVE_EVERY_SECONDS or number + 1 == len(batches):
                    out.flush()
                    index["batches_done"] = number + 1
                    _write_index(cache_dir, index)
                    last_save = time.monotonic()
    finally:
        progress.close()
        model.train(was_training)
    index["complete"] = True
    _write_index(cache_dir, index)
    return PrefixCache(cache_dir)
