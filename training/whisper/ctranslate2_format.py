"""Read (and, for tests, write) CTranslate2's ``model.bin`` with ``struct`` and numpy; no ctranslate2 needed.

Layout (binary versions 4..6, little-endian; checked against CTranslate2's ``src/models/model.cc``
and the faster-whisper base and tiny.en files):

- ``uint32`` binary version;
- string spec name (e.g. ``WhisperSpec``), ``uint32`` spec revision;
- ``uint32`` variable count, then per variable: string name, ``uint8`` rank, ``uint32`` x rank dims,
  ``uint8`` dtype id, ``uint32`` byte count, the raw bytes (C order);
- ``uint32`` alias count, then per alias: string alias, string target variable name.

A string is a ``uint16`` length (counting the trailing NUL) and the bytes ending in NUL. Dtype ids
are CTranslate2's ``DataType`` enum (``include/ctranslate2/types.h``): 0 float32, 1 int8, 2 int16,
3 int32, 4 float16, 5 bfloat16. An int8-quantized weight ``W`` comes with ``W_scale`` (float32, one
per output row): the float weight is ``W / W_scale``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

SUPPORTED_VERSIONS = (4, 5, 6)
# dtype id -> numpy dtype; bfloat16 (5) has no numpy type and is read as its uint16 bit pattern.
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
BFLOAT16 = 5


@dataclass
class CTranslate2Model:
    """The content of a ``model.bin``: named arrays (bfloat16 already widened to float32) and aliases."""

    spec: str
    revision: int
    version: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name or alias."""
        return self.variables[self.aliases.get(name, name)]


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("truncated CTranslate2 model file")
    return data


def _uint(handle: BinaryIO, fmt: str) -> int:
    (value,) = struct.unpack(fmt, _read(handle, struct.calcsize(fmt)))
    return int(value)


def _string(handle: BinaryIO) -> str:
    raw = _read(handle, _uint(handle, "<H"))
    if not raw.endswith(b"\0"):
        raise ValueError("CTranslate2 string without its trailing NUL")
    return raw[:-1].decode("utf-8")


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_model(source: str | Path | BinaryIO) -> CTranslate2Model:
    """Parse a ``model.bin`` (versions 4-6; a path or an open binary file) into arrays.

    Raises ValueError on anything unexpected (unknown version or dtype, truncation, trailing bytes).
    """
    if isinstance(source, (str, Path)):
        with open(source, "rb") as opened:
            return read_model(opened)
    handle: BinaryIO = source
    version = _uint(handle, "<I")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"CTranslate2 binary version {version} is not supported ({SUPPORTED_VERSIONS})")
    spec = _string(handle)
    revision = _uint(handle, "<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(_uint(handle, "<I")):
        name = _string(handle)
        rank = _uint(handle, "<B")
        shape = struct.unpack(f"<{rank}I", _read(handle, 4 * rank))
        dtype_id = _uint(handle, "<B")
        if dtype_id not in DTYPES:
            raise ValueError(f"{name}: unknown CTranslate2 dtype id {dtype_id}")
        num_bytes = _uint(handle, "<I")
        array = np.frombuffer(_read(handle, num_bytes), dtype=DTYPES[dtype_id])
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{name}: {num_bytes} bytes do not hold shape {shape}")
        array = array.reshape(shape)
        variables[name] = _bfloat16_to_float32(array) if dtype_id == BFLOAT16 else array
    aliases = {}
    for _ in range(_uint(handle, "<I")):
        alias = _string(handle)
        aliases[alias] = _string(handle)
    trailing = handle.read()
    if trailing:
        raise ValueError(f"{len(trailing)} unexpected bytes after the aliases")
    return CTranslate2Model(spec, revision, version, variables, aliases)


def _write_string(handle: BinaryIO, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    handle.write(struct.pack("<H", len(raw)) + raw)


def write_model(
    path: str | Path,
    variables: dict[str, np.ndarray],
    spec: str = "WhisperSpec",
    revision: int = 3,
    aliases: dict[str, str] | None = None,
) -> None:
    """Write ``variables`` (float32/float16/int8/int16/int32 arrays) as a version-6 ``model.bin``."""
    codes = {dtype: code for code, dtype in DTYPES.items() if code != BFLOAT16}
    with open(path, "wb") as handle:
        handle.write(struct.pack("<I", 6))
        _write_string(handle, spec)
        handle.write(struct.pack("<II", revision, len(variables)))
        for name, array in variables.items():
            array = np.asarray(array, order="C")  # not ascontiguousarray: it turns scalars 1-d
            code = codes[array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype]
            _write_string(handle, name)
            handle.write(struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape))
            handle.write(struct.pack("<BI", code, array.nbytes))
            handle.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
        handle.write(struct.pack("<I", len(aliases or {})))
        for alias, target in (aliases or {}).items():
            _write_string(handle, alias)
            _write_string(handle, target)
