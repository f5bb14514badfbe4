"""Shared fixtures: a tiny random-init checkpoint for tests of shapes, plumbing and errors; a gRPC stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from asr_client.api.asr.v1 import asr_pb2_grpc
from asr_harness import ServerThread
from random_model import save_random_model


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "random-en")


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[asr_pb2_grpc.RecognizerStub]:
    """A Recognizer stub on the ``server`` fixture of the requesting module (each defines its own)."""
    with grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)
