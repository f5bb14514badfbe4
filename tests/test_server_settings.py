"""``asr-server`` configuration: flags, environment, validation, --help."""

from __future__ import annotations

from pathlib import Path

import pytest
from random_model import save_random_model

from server.main import model_dirs
from server.model.checkpoint import DEFAULT_MODEL_DIR
from server.settings import Settings, parse_settings


def test_defaults_serve_the_bundled_model() -> None:
    settings = parse_settings([])
    assert (settings.host, settings.port, settings.metrics_port) == ("0.0.0.0", 50051, 9400)
    assert settings.model_dir == DEFAULT_MODEL_DIR and settings.models_dir is None
    assert settings.drain_timeout_s == 30 and settings.device == "auto"
    assert model_dirs(settings) == [DEFAULT_MODEL_DIR]


def test_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASR_MAX_STREAMS", "7")
    monkeypatch.setenv("ASR_PORT", "6000")
    settings = parse_settings(["--port", "7000", "--max-wait-ms", "2.5", "--device", "cpu"])
    assert settings.max_streams == 7, "from the environment"
    assert settings.port == 7000, "flags win over the environment"
    assert settings.max_wait_ms == 2.5 and settings.device == "cpu"


def test_invalid_values_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_settings(["--max-streams", "0", "--device", "tpu"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--max-streams / ASR_MAX_STREAMS" in err and "--device / ASR_DEVICE" in err


def test_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_settings(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "ASR_" in text
    for name, field in Settings.model_fields.items():
        assert f"--{name.replace('_', '-')}" in text, name
        assert field.description, f"{name} has no description"


def test_models_dir_serves_every_checkpoint(tmp_path: Path) -> None:
    for name in ("b-model", "a-model"):
        save_random_model(tmp_path / name)
    (tmp_path / "notes").mkdir()
    settings = parse_settings(["--models-dir", str(tmp_path)])
    assert [p.name for p in model_dirs(settings)] == ["a-model", "b-model"]
    with pytest.raises(SystemExit, match="no model checkpoints"):
        model_dirs(parse_settings(["--models-dir", str(tmp_path / "notes")]))
