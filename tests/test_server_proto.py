"""The committed Python stubs are what proto/generate.sh makes from proto/asr/v1/asr.proto."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from asr_harness import REPO_ROOT

STUBS = Path("asr_client/api/asr/v1")
FILES = ["asr_pb2.py", "asr_pb2.pyi", "asr_pb2_grpc.py", "__init__.py"]
# Lines that name the generator's version: a newer grpcio-tools may change them without
# changing the API, so they are left out of the comparison.
VERSION_LINE = re.compile(r"Protobuf Python Version|^\s*\d+,\s*$|GRPC_GENERATED_VERSION = ")


def _normalised(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not VERSION_LINE.search(line)]


def test_committed_stubs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO_ROOT / "proto" / "generate.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )
    for name in FILES:
        committed = REPO_ROOT / "client" / STUBS / name
        fresh = tmp_path / STUBS / name
        assert _normalised(committed) == _normalised(fresh), (
            f"{committed} is out of date with proto/asr/v1/asr.proto: run proto/generate.sh"
        )


def test_service_shape() -> None:
    from asr_client.api.asr.v1 import asr_pb2

    service = asr_pb2.DESCRIPTOR.services_by_name["Recognizer"]
    assert asr_pb2.DESCRIPTOR.package == "asr.v1"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {
        "StreamingRecognize": (True, True),
        "Recognize": (False, False),
        "ListModels": (False, False),
    }
