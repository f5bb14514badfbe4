"""Shared fixtures: a tiny random-init checkpoint for tests of shapes, plumbing and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from random_model import save_random_model


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "random-en")
