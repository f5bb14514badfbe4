"""The ``asr`` CLI end to end against a real server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import grpc
import jiwer
import numpy as np
import pytest
import soundfile as sf
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_client.output import print_text_stream
from asr_harness import (
    ServerThread,
    config,
    finals,
    fixed_chunks,
    requires_espeak,
    stream,
    synthesize,
)
from rich.console import Console

from server.model.checkpoint import DEFAULT_MODEL_DIR

pytestmark = requires_espeak

TEXTS = ["please call me back tomorrow morning", "turn left at the next light"]
MAX_WER = 0.20  # over both files, clean espeak-ng speech (default voice); the session-5 to session-7 models measure 0%


@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> ServerThread:
    with ServerThread([random_model_dir]) as running:
        yield running


@pytest.fixture(scope="module")
def wav_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, bytes, int]]:
    directory = tmp_path_factory.mktemp("audio")
    files = []
    for index, text in enumerate(TEXTS):
        pcm, rate = synthesize(text)
        path = directory / f"clip{index}.wav"
        sf.write(path, np.frombuffer(pcm, "<i2"), rate, subtype="PCM_16")
        files.append((path, pcm, rate))
    return files


def _asr(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "asr_client.cli", *args], input=stdin, capture_output=True, timeout=120
    )


def _expected_text(server: ServerThread, pcm: bytes, rate: int) -> str:
    with grpc.insecure_channel(server.target) as channel:
        return " ".join(finals(stream(asr_pb2_grpc.RecognizerStub(channel), config(rate), fixed_chunks(pcm, 3200))))


def test_transcribe_json_prints_responses_then_the_whole_transcript(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]]
) -> None:
    result = _asr("transcribe", *(str(p) for p, _, _ in wav_files), "--server", server.target, "--json")
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    for path, pcm, rate in wav_files:
        records = [r for r in lines if r["file"] == str(path)]
        *responses, summary = records
        assert responses and all("results" in r or "audio_processed" in r for r in responses)
        assert any(not res.get("is_final", False) for r in responses for res in r.get("results", []))
        final_texts = [
            res["alternatives"][0]["transcript"]
            for r in responses
            for res in r.get("results", [])
            if res.get("is_final")
        ]
        assert summary["text"] == " ".join(final_texts) == _expected_text(server, pcm, rate)
        assert summary["text"]
        assert abs(summary["audio_seconds"] - len(pcm) / 2 / rate) < 0.3


def test_transcribe_stdin_raw_pcm(server: ServerThread, wav_files: list[tuple[Path, bytes, int]]) -> None:
    _, pcm, rate = wav_files[0]
    result = _asr("transcribe", "-", "--rate", str(rate), "--server", server.target, "--json", stdin=pcm)
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout.decode().splitlines()[-1])
    assert summary["file"] == "<stdin>"
    assert summary["text"] == _expected_text(server, pcm, rate)


def test_transcribe_text_output_prints_finals(server: ServerThread, wav_files: list[tuple[Path, bytes, int]]) -> None:
    path, pcm, rate = wav_files[1]
    result = _asr("transcribe", str(path), "--server", server.target, "--speed", "20", "--chunk-ms", "50")
    assert result.returncode == 0, result.stderr.decode()
    # Not a terminal: finals only, one per line.
    assert " ".join(result.stdout.decode().splitlines()) == _expected_text(server, pcm, rate)


def test_models_lists_the_server_models(server: ServerThread) -> None:
    result = _asr("models", "--server", server.target, "--json")
    assert result.returncode == 0, result.stderr.decode()
    models = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [m["name"] for m in models] == [server.registry.default]
    assert models[0]["is_default"] and models[0]["sample_rate_hertz"] == 16000
    table = _asr("models", "--server", server.target)
    assert table.returncode == 0 and server.registry.default[:8] in table.stdout.decode()


def test_errors_are_reported_with_status_and_exit_code(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], tmp_path: Path
) -> None:
    missing = _asr("transcribe", str(tmp_path / "missing.wav"), "--server", server.target)
    assert missing.returncode == 1 and "cannot read" in missing.stderr.decode()
    path = wav_files[0][0]
    language = _asr("transcribe", str(path), "--server", server.target, "--languages", "xx")
    assert language.returncode == 1
    assert "INVALID_ARGUMENT" in language.stderr.decode() and "'xx'" in language.stderr.decode()
    talker = _asr("transcribe", str(path), "--server", server.target, "--multi-talker")
    assert talker.returncode == 1 and "multi_talker" in talker.stderr.decode()
    down = _asr("transcribe", str(path), "--server", "127.0.0.1:1", "--timeout", "5")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr.decode()


def test_cli_transcribes_with_the_trained_model(wav_files: list[tuple[Path, bytes, int]]) -> None:
    with ServerThread([DEFAULT_MODEL_DIR]) as trained:
        result = _asr("transcribe", *(str(p) for p, _, _ in wav_files), "--server", trained.target, "--json")
    assert result.returncode == 0, result.stderr.decode()
    summaries = [r for r in map(json.loads, result.stdout.decode().splitlines()) if "text" in r]
    hypotheses = [summary["text"] for summary in summaries]
    assert len(hypotheses) == len(TEXTS)
    print(f"bundled model WER through the CLI: {jiwer.wer(TEXTS, hypotheses):.2%}")
    assert jiwer.wer(TEXTS, hypotheses) <= MAX_WER, list(zip(TEXTS, hypotheses, strict=True))


def test_terminal_output_shows_partials_in_place_and_prints_finals() -> None:
    def response(text: str, is_final: bool, channel: int = 0) -> asr_pb2.StreamingRecognizeResponse:
        result = asr_pb2.StreamingRecognitionResult(is_final=is_final, channel=channel)
        result.alternatives.add(transcript=text)
        return asr_pb2.StreamingRecognizeResponse(results=[result])

    responses = [
        response("hel", False),
        response("hello wor", False),
        response("hi", False, channel=1),
        response("hello world", True),
        response("hi there", True, channel=1),
    ]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60)
    transcript = print_text_stream("a.wav", responses, multi_talker=True, console=console, show_name=False)
    text = out.getvalue()
    assert "hello wor" in text, "partials are drawn"
    assert "[speaker 1] hello world" in text and "[speaker 2] hi there" in text
    assert transcript.text == "hello world hi there"
    assert transcript.channel_texts() == {"0": "hello world", "1": "hi there"}
