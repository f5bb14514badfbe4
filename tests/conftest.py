"""Shared fixtures: a tiny random-init checkpoint for tests of shapes, plumbing and errors, that model
with a joiner that emits (for search tests) and a token LM over its pieces; a gRPC stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from asr_client.api.asr.v1 import asr_pb2_grpc
from asr_harness import ServerThread
from model_helpers import noisy_model, random_token_lm
from random_model import save_random_model

from server.model.transducer import StreamingTransducer
from server.search.ngram_lm import TokenNgramLM


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "random-en")


@pytest.fixture(scope="module")
def model(random_model_dir: Path) -> StreamingTransducer:
    """The random model with a noisy joiner (``model_helpers.noisy_model``), one per test module;
    a module that needs another model defines its own ``model``."""
    return noisy_model(random_model_dir)


@pytest.fixture(scope="module")
def lm(model: StreamingTransducer) -> TokenNgramLM:
    """A 3-gram token LM over random sentences of ``model``'s pieces (``model_helpers.random_token_lm``)."""
    return random_token_lm(model)


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[asr_pb2_grpc.RecognizerStub]:
    """A Recognizer stub on the ``server`` fixture of the requesting module (each defines its own)."""
    with grpc.insecure_channel(server.target) as channel:
        yield asr_pb2_grpc.RecognizerStub(channel)
