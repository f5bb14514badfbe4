"""The ``asr`` CLI end to end against a real server."""

from __future__ import annotations

import io
import json
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import jiwer
import numpy as np
import pytest
import soundfile as sf
from asr_client import __version__
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from asr_client.output import print_json_stream, print_text_stream
from asr_client.sources import RawFormat, stream_source
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


CLI = [sys.executable, "-m", "asr_client.cli"]


def _asr(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=120)


def _expected_text(server: ServerThread, pcm: bytes, rate: int, **fields: object) -> str:
    """The transcript the server gives ``pcm`` streamed directly (``fields``: config overrides)."""
    with grpc.insecure_channel(server.target) as channel:
        responses = stream(asr_pb2_grpc.RecognizerStub(channel), config(rate, **fields), fixed_chunks(pcm, 3200))
        return " ".join(finals(responses))


def _json_lines(result: subprocess.CompletedProcess[bytes]) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def _summary(result: subprocess.CompletedProcess[bytes]) -> dict:
    """The last JSON line of a --json run: the file's whole transcript."""
    return _json_lines(result)[-1]


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


# -- options and errors ---------------------------------------------------------------------------
def test_version() -> None:
    result = _asr("--version")
    assert result.returncode == 0 and result.stdout.decode().strip() == f"asr {__version__} (asr-client)"


@pytest.mark.parametrize(
    "option", [("--speed", "-2"), ("--chunk-ms", "-10"), ("--chunk-ms", "0"), ("--speed", "nan"), ("--rate", "-1")]
)
def test_non_positive_speed_chunk_and_rate_are_refused(option: tuple[str, str], tmp_path: Path) -> None:
    result = _asr("transcribe", str(tmp_path / "any.wav"), *option)
    assert result.returncode == 2  # argparse: before any file is read or server called
    assert f"argument {option[0]}" in result.stderr.decode() and "positive" in result.stderr.decode()


def test_missing_file_says_no_such_file(server: ServerThread, tmp_path: Path) -> None:
    result = _asr("transcribe", str(tmp_path / "missing.wav"), "--server", server.target)
    assert result.returncode == 1
    assert result.stderr.decode() == f"asr: cannot read {tmp_path / 'missing.wav'}: No such file or directory\n"


def test_errors_are_one_line_however_long(server: ServerThread, wav_files: list[tuple[Path, bytes, int]]) -> None:
    codes = ",".join(f"x{index}-very-long-language-tag" for index in range(5))
    result = _asr("transcribe", str(wav_files[0][0]), "--server", server.target, "--languages", codes)
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and len(lines[0]) > 200, lines  # not wrapped at 80 columns
    assert lines[0].startswith(f"asr: {wav_files[0][0]}: INVALID_ARGUMENT: ") and "it supports: en" in lines[0]


def test_models_table_is_whole_when_piped(server: ServerThread) -> None:
    result = _asr("models", "--server", server.target)
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert "…" not in text
    header = next(line for line in text.splitlines() if "model" in line)
    assert all(name in header for name in ("languages", "multi-talker", "latency", "parameters"))
    row = next(line for line in text.splitlines() if server.registry.default in line)
    assert f"{server.registry.default} (default)" in row and "16000 Hz" in row and " M " in row


# -- audio on stdin -------------------------------------------------------------------------------
@pytest.mark.parametrize(("encoding", "subtype"), [("mulaw", "ULAW"), ("alaw", "ALAW")])
def test_stdin_raw_mulaw_and_alaw(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], encoding: str, subtype: str
) -> None:
    _, pcm, rate = wav_files[0]
    encoded = io.BytesIO()
    sf.write(encoded, np.frombuffer(pcm, "<i2"), rate, format="RAW", subtype=subtype)
    data = encoded.getvalue()
    assert len(data) == len(pcm) // 2  # one byte per sample
    args = ("transcribe", "-", "--encoding", encoding, "--rate", str(rate), "--server", server.target, "--json")
    summary = _summary(_asr(*args, stdin=data))
    api_encoding = asr_pb2.MULAW if encoding == "mulaw" else asr_pb2.ALAW
    with grpc.insecure_channel(server.target) as channel:
        direct = stream(
            asr_pb2_grpc.RecognizerStub(channel), config(rate, encoding=api_encoding), fixed_chunks(data, 1600)
        )
    assert summary["text"] == " ".join(finals(direct))
    # As LINEAR16 the same bytes would be half as long.
    assert abs(summary["audio_seconds"] - len(data) / rate) < 0.3


@pytest.mark.parametrize(
    ("container", "subtype"), [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]
)
def test_stdin_containers_are_told_by_their_header(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], container: str, subtype: str
) -> None:
    _, pcm, rate = wav_files[0]
    encoded = io.BytesIO()
    sf.write(encoded, np.frombuffer(pcm, "<i2"), rate, format=container, subtype=subtype)
    # A wrong --rate: the header's wins, and the header is not read as samples.
    args = ("transcribe", "-", "--rate", "8000", "--server", server.target, "--json")
    summary = _summary(_asr(*args, stdin=encoded.getvalue()))
    assert abs(summary["audio_seconds"] - len(pcm) / 2 / rate) < 0.3
    if container != "OGG":  # lossless: the same samples as the file
        assert summary["text"] == _expected_text(server, pcm, rate)


@pytest.mark.parametrize(
    ("subtype", "encoding", "sample_bytes"), [("PCM_16", asr_pb2.LINEAR16, 2), ("ULAW", asr_pb2.MULAW, 1)]
)
def test_wav_on_a_pipe_streams_its_samples_as_they_are(subtype: str, encoding: int, sample_bytes: int) -> None:
    """The data chunk goes out as it is, and ends where its size says (not with what follows)."""
    samples = (np.arange(16000, dtype=np.int16) * 7).astype(np.int16)
    wav, raw = io.BytesIO(), io.BytesIO()
    sf.write(wav, samples, 16000, format="WAV", subtype=subtype)
    sf.write(raw, samples, 16000, format="RAW", subtype=subtype)
    piped = io.BytesIO(wav.getvalue() + b"LIST\x04\x00\x00\x00junk")
    source = stream_source(piped, RawFormat(sample_rate=8000), chunk_ms=100)
    assert source.encoding == encoding and source.sample_bytes == sample_bytes
    assert (source.sample_rate, source.channels) == (16000, 1)  # the header's, not --rate's
    chunks = list(source.chunks)
    assert b"".join(chunks) == raw.getvalue()
    assert max(map(len, chunks)) <= 1600 * sample_bytes


def test_stdin_mulaw_wav_is_sent_as_mulaw(server: ServerThread, wav_files: list[tuple[Path, bytes, int]]) -> None:
    """A G.711 WAV streams its bytes as they are (MULAW), not decoded to LINEAR16 first."""
    _, pcm, rate = wav_files[0]
    samples = np.frombuffer(pcm, "<i2")
    wav, raw = io.BytesIO(), io.BytesIO()
    sf.write(wav, samples, rate, format="WAV", subtype="ULAW")
    sf.write(raw, samples, rate, format="RAW", subtype="ULAW")
    summary = _summary(_asr("transcribe", "-", "--server", server.target, "--json", stdin=wav.getvalue()))
    assert summary["text"] == _expected_text(server, raw.getvalue(), rate, encoding=asr_pb2.MULAW)
    assert abs(summary["audio_seconds"] - len(samples) / rate) < 0.3


# -- channels -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stereo_file(wav_files: list[tuple[Path, bytes, int]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence on channel 0, the first clip's speech on channel 1."""
    _, pcm, rate = wav_files[0]
    speech = np.frombuffer(pcm, "<i2")
    path = tmp_path_factory.mktemp("stereo") / "stereo.wav"
    sf.write(path, np.stack([np.zeros_like(speech), speech], axis=1), rate, subtype="PCM_16")
    return path


def test_channel_sends_one_channel_of_a_stereo_file(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], stereo_file: Path
) -> None:
    _, pcm, rate = wav_files[0]
    summary = _summary(_asr("transcribe", str(stereo_file), "--channel", "1", "--server", server.target, "--json"))
    assert summary["text"] == _expected_text(server, pcm, rate)
    missing = _asr("transcribe", str(stereo_file), "--channel", "2", "--server", server.target)
    assert missing.returncode == 1 and "INVALID_ARGUMENT" in missing.stderr.decode()
    assert "selected_channel 2 does not exist" in missing.stderr.decode()
    both = _asr("transcribe", str(stereo_file), "--channel", "1", "--per-channel")
    assert both.returncode == 2 and "not allowed with" in both.stderr.decode()


def test_per_channel_labels_results_with_their_audio_channel(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], stereo_file: Path
) -> None:
    _, pcm, rate = wav_files[0]
    records = _json_lines(_asr("transcribe", str(stereo_file), "--per-channel", "--server", server.target, "--json"))
    *responses, summary = records
    channels = {result.get("audio_channel", 0) for r in responses for result in r.get("results", [])}
    assert channels <= {0, 1} and 1 in channels
    assert summary["audio_channels"]["1"] == _expected_text(server, pcm, rate), "channel 1 alone: the mono speech"
    text = _asr("transcribe", str(stereo_file), "--per-channel", "--server", server.target)
    assert text.returncode == 0, text.stderr.decode()
    lines = text.stdout.decode().splitlines()
    assert lines and all(line.startswith(("[channel 0] ", "[channel 1] ")) for line in lines), lines
    assert (
        " ".join(line.removeprefix("[channel 1] ") for line in lines if line.startswith("[channel 1] "))
        == (summary["audio_channels"]["1"])
    )


def _result(
    text: str, is_final: bool, *, audio_channel: int = 0, words: tuple = ()
) -> asr_pb2.StreamingRecognitionResult:
    result = asr_pb2.StreamingRecognitionResult(is_final=is_final, audio_channel=audio_channel)
    alternative = result.alternatives.add(transcript=text)
    for word, start, end in words:
        info = alternative.words.add(word=word)
        info.start_time.FromMilliseconds(start)
        info.end_time.FromMilliseconds(end)
    return result


def test_per_channel_results_show_their_audio_channel() -> None:
    """What a server that implements per-channel recognition sends, shown by the CLI's printers."""
    responses = [
        asr_pb2.StreamingRecognizeResponse(results=[_result("hel", False, audio_channel=1)]),
        asr_pb2.StreamingRecognizeResponse(results=[_result("hello", True, audio_channel=1)]),
        asr_pb2.StreamingRecognizeResponse(results=[_result("hi there", True, audio_channel=0)]),
    ]
    out = io.StringIO()
    print_text_stream("a.wav", responses, False, Console(file=out), show_name=False, per_channel=True)
    assert out.getvalue().splitlines() == ["[channel 1] hello", "[channel 0] hi there"]
    out = io.StringIO()
    print_json_stream("a.wav", responses, False, out, per_channel=True)
    *records, summary = map(json.loads, out.getvalue().splitlines())
    assert records[1]["results"][0]["audio_channel"] == 1
    assert summary["audio_channels"] == {"0": "hi there", "1": "hello"}


# -- word times and subtitles ---------------------------------------------------------------------
WORD_TIME = re.compile(r"(\S+) (\d+\.\d\d)-(\d+\.\d\d)")


def test_words_shows_word_times_after_each_final(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]]
) -> None:
    path, pcm, rate = wav_files[1]
    result = _asr("transcribe", str(path), "--words", "--server", server.target)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    finals_, timings = lines[0::2], lines[1::2]
    assert finals_ and len(finals_) == len(timings)
    assert " ".join(finals_) == _expected_text(server, pcm, rate)
    previous_start = 0.0
    for final, timing in zip(finals_, timings, strict=True):
        assert timing.startswith("  ")
        words = [WORD_TIME.fullmatch(item) for item in timing.strip().split("  ")]
        assert all(words), timing
        assert " ".join(word[1] for word in words if word) == final
        for word in words:
            assert word is not None
            start, end = float(word[2]), float(word[3])
            # Words start in order (the random model's may overlap: several tokens in one frame).
            assert previous_start <= start < end <= len(pcm) / 2 / rate + 1.0
            previous_start = start


SRT_SPAN = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})")


def _cue_seconds(match: re.Match[str], first: int) -> float:
    hours, minutes, seconds, millis = (int(match[first + i]) for i in range(4))
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_from_the_finals_timed_by_their_words(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], fmt: str
) -> None:
    path, pcm, rate = wav_files[0]
    result = _asr("transcribe", str(path), "--format", fmt, "--server", server.target)
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
        text = text.removeprefix("WEBVTT\n\n")
    blocks = [block.splitlines() for block in text.strip().split("\n\n")]
    texts, last_start = [], -1.0
    for number, block in enumerate(blocks, start=1):
        if fmt == "srt":
            assert block[0] == str(number)
            block = block[1:]
        span = SRT_SPAN.fullmatch(block[0])
        assert span, block
        assert ("," if fmt == "srt" else ".") in block[0]
        start, end = _cue_seconds(span, 1), _cue_seconds(span, 5)
        assert last_start <= start < end <= len(pcm) / 2 / rate + 1.0
        assert 1 <= len(block[1:]) <= 2 and all(0 < len(line) <= 42 for line in block[1:])
        last_start = start
        texts.append(" ".join(block[1:]))
    assert " ".join(texts) == _expected_text(server, pcm, rate)


def test_subtitles_take_one_file_and_not_json(wav_files: list[tuple[Path, bytes, int]]) -> None:
    paths = [str(p) for p, _, _ in wav_files]
    several = _asr("transcribe", *paths, "--format", "srt")
    assert several.returncode == 2 and "one FILE" in several.stderr.decode()
    both = _asr("transcribe", paths[0], "--format", "vtt", "--json")
    assert both.returncode == 2 and "contradict" in both.stderr.decode()


# -- Ctrl-C ---------------------------------------------------------------------------------------
def _start_cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _live_wav_header(rate: int) -> bytes:
    """The WAV header a recorder writing to a pipe puts out (arecord): sizes it cannot know."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + b"\xff" * 4


@pytest.mark.parametrize("stdin_format", ["raw", "wav"])
def test_first_ctrl_c_half_closes_and_prints_the_last_final(
    server: ServerThread, wav_files: list[tuple[Path, bytes, int]], stdin_format: str
) -> None:
    """Live audio on stdin that never ends (raw samples, or a WAV as a recorder pipes it): after
    Ctrl-C the stream is finalised as if the audio had ended there, its last results printed, and
    the CLI exits 130."""
    _, pcm, rate = wav_files[0]
    header = _live_wav_header(rate) if stdin_format == "wav" else b""
    cli = _start_cli("transcribe", "-", "--rate", str(rate), "--server", server.target, "--json")
    assert cli.stdin is not None and cli.stdout is not None and cli.stderr is not None
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=_pump_lines, args=(cli.stdout, lines), daemon=True)
    reader.start()
    try:
        cli.stdin.write(header + pcm)
        cli.stdin.flush()  # and stdin stays open, as a microphone's would
        # The server has recognised all it can without the end of the audio once responses stop.
        records = [json.loads(lines.get(timeout=60))]
        records += _records_until_quiet(lines, quiet_s=1.5)
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=60) == 130, cli.stderr.read().decode()
        reader.join(10)
    finally:
        cli.kill()
    assert "stopping" in cli.stderr.read().decode()
    records += _records_until_quiet(lines, quiet_s=0.1)
    *responses, summary = records
    assert summary["file"] == "<stdin>" and "text" in summary
    assert summary["text"] == _expected_text(server, pcm, rate), "the same finals as if stdin had ended"
    assert any(result.get("is_final") for result in responses[-1].get("results", [])), "the last final"


def _pump_lines(pipe: io.BufferedReader, lines: queue.Queue[bytes]) -> None:
    for line in pipe:
        lines.put(line)


def _records_until_quiet(lines: queue.Queue[bytes], quiet_s: float) -> list[dict]:
    """JSON lines from ``lines`` until none arrives for ``quiet_s``."""
    records = []
    while True:
        try:
            records.append(json.loads(lines.get(timeout=quiet_s)))
        except queue.Empty:
            return records


def _audio_seconds(record: dict) -> float:
    return float(record.get("audio_processed", "0s").rstrip("s"))


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """A TCP port that accepts connections and never answers: a stream to it never ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = threading.Event()
    connections: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connections.append(listener.accept()[0])
            except OSError:
                return
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        listener.close()
        for connection in connections:
            connection.close()


def test_second_ctrl_c_quits_without_waiting(
    silent_server: tuple[str, threading.Event], wav_files: list[tuple[Path, bytes, int]]
) -> None:
    target, accepted = silent_server
    _, pcm, rate = wav_files[0]
    cli = _start_cli("transcribe", "-", "--rate", str(rate), "--server", target, "--timeout", "60")
    assert cli.stdin is not None and cli.stderr is not None
    try:
        cli.stdin.write(pcm[:32000])
        cli.stdin.flush()
        assert accepted.wait(30), "the CLI did not connect"
        cli.send_signal(signal.SIGINT)
        assert "stopping" in cli.stderr.readline().decode()
        time.sleep(0.5)
        assert cli.poll() is None, "after the first Ctrl-C the CLI waits for the server's last results"
        started = time.monotonic()
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=10) == 130
        assert time.monotonic() - started < 5
    finally:
        cli.kill()
