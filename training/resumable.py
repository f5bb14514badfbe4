"""What a resumable data-set build (``synth-multi``, ``mix-tsot``) has done so far, and with what."""

from __future__ import annotations

import json
from pathlib import Path


def done_indices(manifest: Path) -> set[int]:
    """Row indices already in ``manifest``; a torn last line (the run was killed mid-write) is cut off."""
    if not manifest.exists():
        return set()
    data = manifest.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        manifest.write_bytes(complete)
    return {json.loads(line)["index"] for line in complete.decode("utf-8").splitlines() if line.strip()}


def check_settings(path: Path, settings: dict, command: str) -> None:
    """Record the data set's settings in ``path``, or refuse to append to a folder made with other ones."""
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != settings:
            raise SystemExit(f"{command}: {path.parent} was made with {previous}, not {settings}; use another --out")
    else:
        path.write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
