"""The Node.js client (client/node, generated from proto/ at run time) against the real server."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
from asr_harness import REPO_ROOT, ServerThread, requires_espeak, synthesize

from server.model.checkpoint import DEFAULT_MODEL_DIR

NODE_CLIENT = REPO_ROOT / "client" / "node"
SENTENCE = "please call me back tomorrow morning"

# Machines without Node.js skip; where npm exists, `make test` has installed the packages
# (make node-deps), so a missing node_modules there is a failure, not a skip.
pytestmark = [
    requires_espeak,
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="Node.js is not installed"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    assert (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run make node-deps"
    with ServerThread([Path(DEFAULT_MODEL_DIR)]) as running:
        yield running


def _run(server: ServerThread, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["node", str(NODE_CLIENT / "stream_file.js"), "--target", server.target, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_node_client_streams_a_file_and_gets_its_transcript(server: ServerThread, tmp_path: Path) -> None:
    pcm, rate = synthesize(SENTENCE)
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.frombuffer(pcm, dtype="<i2"), rate, subtype="PCM_16")
    done = _run(server, "--chunk-ms", "80", str(wav))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    responses, summary = lines[:-1], lines[-1]
    assert any(not r.get("isFinal", False) for response in responses for r in response.get("results", [])), "partials"
    assert any(r.get("isFinal", False) for response in responses for r in response.get("results", []))
    assert jiwer.wer(SENTENCE, summary["text"]) <= 0.34, summary


def test_the_node_client_reports_the_servers_error(server: ServerThread, tmp_path: Path) -> None:
    pcm, rate = synthesize(SENTENCE)
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.frombuffer(pcm, dtype="<i2"), rate, subtype="PCM_16")
    failed = _run(server, "--language", "xx", str(wav))
    assert failed.returncode == 1
    assert failed.stderr.startswith("asr-node: INVALID_ARGUMENT: ") and "it supports: en" in failed.stderr
    missing = _run(server, str(tmp_path / "nope.wav"))
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr
