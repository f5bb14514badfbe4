"""The client's N-best, word confidence, phrase boosting, single-utterance and voice activity options.

The config builders on their own (pure protobuf); ``stream_file`` of both clients and the ``asr``
CLI end to end against a real server on loopback with the bundled model (espeak-ng audio made at
test time); the text and JSON printers on hand-made responses.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from asr_client import AsrClient, AsyncAsrClient, asr_pb2, recognition_config, streaming_config
from asr_client.output import print_json_stream, print_text_stream
from asr_harness import ServerThread, requires_espeak, synthesize
from google.protobuf.duration_pb2 import Duration
from rich.console import Console

from server.model.checkpoint import DEFAULT_MODEL_DIR

# A name the bundled model misspells ("ten oka") and spells right when boosted (test_phrase_boosting).
NAME, NAMED = "tanaka", "please send the report to tanaka before friday"
FIRST, SECOND = "please call me back tomorrow morning", "the meeting is on thursday"
BEGIN, END = asr_pb2.SPEECH_ACTIVITY_BEGIN, asr_pb2.SPEECH_ACTIVITY_END
CLI = [sys.executable, "-m", "asr_client.cli"]


# -- the config builders ---------------------------------------------------------------------------
def test_recognition_config_sets_nbest_word_confidence_and_speech_contexts() -> None:
    plain = recognition_config(16000)
    assert plain.max_alternatives == 0 and not plain.enable_word_confidence and not plain.speech_contexts

    given = asr_pb2.SpeechContext(phrases=["gdansk"], boost=20.0)
    config = recognition_config(
        8000,
        max_alternatives=4,
        enable_word_confidence=True,
        speech_contexts=[given],
        phrases=("tanaka", "zimmerman"),
        boost=7.5,
    )
    assert config.max_alternatives == 4 and config.enable_word_confidence
    assert list(config.speech_contexts) == [given, asr_pb2.SpeechContext(phrases=["tanaka", "zimmerman"], boost=7.5)]
    # Phrases alone: one context at the server's default boost (0).
    (only,) = recognition_config(16000, phrases=["kubernetes"]).speech_contexts
    assert list(only.phrases) == ["kubernetes"] and only.boost == 0.0
    # The message survives the wire format (what the server parses).
    assert asr_pb2.RecognitionConfig.FromString(config.SerializeToString()) == config
    with pytest.raises(ValueError, match="boost applies to phrases"):
        recognition_config(16000, boost=3.0)


def test_streaming_config_sets_single_utterance_events_and_timeouts() -> None:
    config = recognition_config(16000)
    plain = streaming_config(config)
    assert plain.interim_results and not plain.single_utterance and not plain.enable_voice_activity_events
    assert not plain.HasField("voice_activity_timeout")

    streaming = streaming_config(
        config,
        interim_results=False,
        single_utterance=True,
        enable_voice_activity_events=True,
        speech_start_timeout_s=1.5,
        speech_end_timeout_s=0.25,
    )
    assert streaming.config == config and not streaming.interim_results
    assert streaming.single_utterance and streaming.enable_voice_activity_events
    timeouts = streaming.voice_activity_timeout
    assert timeouts.speech_start_timeout == Duration(seconds=1, nanos=500_000_000)
    assert timeouts.speech_end_timeout == Duration(nanos=250_000_000)
    # One timeout: the other stays unset (no limit), not 0 s.
    end_only = streaming_config(config, speech_end_timeout_s=2).voice_activity_timeout
    assert end_only.HasField("speech_end_timeout") and not end_only.HasField("speech_start_timeout")
    # 0 s is sent as set (the server refuses it) rather than dropped as "no limit".
    assert streaming_config(config, speech_start_timeout_s=0.0).voice_activity_timeout.HasField("speech_start_timeout")
    with pytest.raises(ValueError, match="speech_end_timeout_s must be a finite number"):
        streaming_config(config, speech_end_timeout_s=float("nan"))


# -- the printers ------------------------------------------------------------------------------------
def _final(*alternatives: tuple[str, float], words: tuple = ()) -> asr_pb2.StreamingRecognitionResult:
    result = asr_pb2.StreamingRecognitionResult(is_final=True)
    for index, (text, confidence) in enumerate(alternatives):
        alternative = result.alternatives.add(transcript=text, confidence=confidence)
        for word, start, end, word_confidence in words if index == 0 else ():
            info = alternative.words.add(word=word, confidence=word_confidence)
            info.start_time.FromMilliseconds(start)
            info.end_time.FromMilliseconds(end)
    return result


def _event(kind: asr_pb2.SpeechEventType, ms: int) -> asr_pb2.StreamingRecognizeResponse:
    response = asr_pb2.StreamingRecognizeResponse(speech_event_type=kind)
    response.speech_event_time.FromMilliseconds(ms)
    return response


def _responses() -> list[asr_pb2.StreamingRecognizeResponse]:
    final = _final(
        ("hello world", 0.7), ("hello word", 0.2), words=(("hello", 480, 720, 0.9), ("world", 720, 1200, 0.6))
    )
    return [
        _event(BEGIN, 450),
        asr_pb2.StreamingRecognizeResponse(results=[final], audio_processed=Duration(seconds=1, nanos=600_000_000)),
        _event(END, 1250),
        _event(asr_pb2.END_OF_SINGLE_UTTERANCE, 1600),
    ]


def test_text_output_shows_alternatives_word_confidence_and_events() -> None:
    out = io.StringIO()
    transcript = print_text_stream("a.wav", _responses(), False, Console(file=out), show_name=False, words=True)
    assert out.getvalue().splitlines() == [
        "[speech begins at 0.45 s]",
        "hello world",
        "  hello 0.48-0.72 (0.90)  world 0.72-1.20 (0.60)",
        "  #2 hello word (0.20)",
        "[speech ends at 1.25 s]",
        "[end of single utterance at 1.60 s]",
    ]
    assert transcript.text == "hello world"
    assert transcript.audio_seconds == pytest.approx(1.6), "the events' responses carry no audio_processed"


def test_json_output_carries_alternatives_and_sums_up_the_events() -> None:
    out = io.StringIO()
    print_json_stream("a.wav", _responses(), False, out)
    *records, summary = map(json.loads, out.getvalue().splitlines())
    assert [r["speech_event_type"] for r in records] == [
        "SPEECH_ACTIVITY_BEGIN",
        "SPEECH_EVENT_UNSPECIFIED",
        "SPEECH_ACTIVITY_END",
        "END_OF_SINGLE_UTTERANCE",
    ]
    assert [a["transcript"] for a in records[1]["results"][0]["alternatives"]] == ["hello world", "hello word"]
    assert summary["text"] == "hello world" and summary["audio_seconds"] == pytest.approx(1.6)
    assert summary["speech_events"] == [
        {"type": "SPEECH_ACTIVITY_BEGIN", "time": 0.45},
        {"type": "SPEECH_ACTIVITY_END", "time": 1.25},
        {"type": "END_OF_SINGLE_UTTERANCE", "time": 1.6},
    ]
    plain = io.StringIO()
    print_json_stream("a.wav", _responses()[1:2], False, plain)
    assert "speech_events" not in json.loads(plain.getvalue().splitlines()[-1])


def test_boost_without_a_phrase_is_refused_by_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "transcribe", str(tmp_path / "any.wav"), "--boost", "8"], capture_output=True, timeout=120
    )
    assert result.returncode == 2 and "--boost applies to the --phrase phrases" in result.stderr.decode()


# -- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread([Path(DEFAULT_MODEL_DIR)]) as running:
        yield running


def _write(path: Path, *parts: str | float) -> Path:
    """A mono 16-bit WAV of espeak-ng sentences (str) and silences (float seconds) in a row."""
    rate = synthesize(FIRST)[1]
    pieces = [synthesize(part)[0] if isinstance(part, str) else bytes(2 * round(part * rate)) for part in parts]
    sf.write(path, np.frombuffer(b"".join(pieces), "<i2"), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("options")
    return {
        "named": _write(directory / "named.wav", 0.3, NAMED, 0.5),
        "two": _write(directory / "two.wav", 0.5, FIRST, 1.5, SECOND, 1.0),
        "silence": _write(directory / "silence.wav", 4.0),
    }


def _finals(responses: list[asr_pb2.StreamingRecognizeResponse]) -> list[asr_pb2.StreamingRecognitionResult]:
    return [result for response in responses for result in response.results if result.is_final]


def _event_kinds(responses: list[asr_pb2.StreamingRecognizeResponse]) -> list[int]:
    return [r.speech_event_type for r in responses if r.speech_event_type != asr_pb2.SPEECH_EVENT_UNSPECIFIED]


@requires_espeak
def test_stream_file_sends_nbest_word_confidence_and_phrases(server: ServerThread, audio: dict[str, Path]) -> None:
    with AsrClient(server.target) as client:
        one = _finals(list(client.stream_file(audio["named"], interim_results=False)))
        many = _finals(
            list(
                client.stream_file(
                    audio["named"],
                    interim_results=False,
                    max_alternatives=3,
                    enable_word_time_offsets=True,
                    enable_word_confidence=True,
                )
            )
        )
        boosted = _finals(list(client.stream_file(audio["named"], interim_results=False, phrases=[NAME], boost=5)))
    assert all(len(r.alternatives) == 1 for r in one)
    # The best first: the same transcripts as with one alternative, then up to two more, distinct.
    assert [r.alternatives[0].transcript for r in many] == [r.alternatives[0].transcript for r in one]
    assert any(len(r.alternatives) > 1 for r in many)
    for result in many:
        transcripts = [a.transcript for a in result.alternatives]
        assert 1 <= len(transcripts) <= 3 and len(set(transcripts)) == len(transcripts)
        assert all(0.0 < w.confidence <= 1.0 for a in result.alternatives for w in a.words)
        assert result.alternatives[0].words
    plain = " ".join(r.alternatives[0].transcript for r in one)
    assert NAME not in plain.split(), plain
    assert " ".join(r.alternatives[0].transcript for r in boosted) == NAMED


@requires_espeak
def test_a_bad_boost_or_alternatives_count_is_invalid_argument_through_the_library(
    server: ServerThread, audio: dict[str, Path]
) -> None:
    with AsrClient(server.target) as client:
        with pytest.raises(grpc.RpcError) as error:
            list(client.stream_file(audio["named"], phrases=[NAME], boost=-1))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "speech_contexts[0].boost must be between 0 and 20" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            list(client.stream_file(audio["named"], max_alternatives=11))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_alternatives must be between 0 and 10" in error.value.details()


@requires_espeak
def test_stream_file_single_utterance_ends_after_the_first_final(server: ServerThread, audio: dict[str, Path]) -> None:
    with AsrClient(server.target) as client:
        responses = list(client.stream_file(audio["two"], single_utterance=True))
    finals = _finals(responses)
    assert len(finals) == 1 and "tomorrow" in finals[0].alternatives[0].transcript
    assert "thursday" not in " ".join(r.alternatives[0].transcript for resp in responses for r in resp.results)
    assert responses[-1].speech_event_type == asr_pb2.END_OF_SINGLE_UTTERANCE
    assert _event_kinds(responses) == [asr_pb2.END_OF_SINGLE_UTTERANCE], "no voice activity events unasked"


@requires_espeak
def test_async_stream_file_voice_activity_events_and_timeouts(server: ServerThread, audio: dict[str, Path]) -> None:
    async def run() -> tuple[list, list]:
        async with AsyncAsrClient(server.target) as client:
            events = [
                r
                async for r in client.stream_file(
                    audio["two"], interim_results=False, enable_voice_activity_events=True
                )
            ]
            timed_out = [r async for r in client.stream_file(audio["silence"], speech_start_timeout_s=1.0)]
        return events, timed_out

    events, timed_out = asyncio.run(run())
    # The refused configuration through the blocking client: grpc-aio may report a stream the server
    # refuses while the client is still sending as INTERNAL "Internal error from Core" (its failed
    # send overrides the server's status; see AsyncAsrClient.streaming_recognize).
    with AsrClient(server.target) as client, pytest.raises(grpc.RpcError) as refused:
        list(client.stream_file(audio["silence"], speech_end_timeout_s=0.0))
    assert "speech_end_timeout must be between 1 ms" in (refused.value.details() or "")  # type: ignore[attr-defined]
    zero_timeout = refused.value.code()  # type: ignore[attr-defined]
    assert _event_kinds(events) == [BEGIN, END, BEGIN, END]
    times = [r.speech_event_time.ToTimedelta().total_seconds() for r in events if r.speech_event_type]
    assert times == sorted(times) and 0.2 < times[0] < 1.0
    assert len(_finals(events)) == 2
    assert _event_kinds(timed_out) == [asr_pb2.SPEECH_ACTIVITY_TIMEOUT]
    assert timed_out[-1].speech_event_time.ToTimedelta().total_seconds() < 3.0, "ended before the 4 s of audio"
    assert zero_timeout == grpc.StatusCode.INVALID_ARGUMENT


def _asr(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], capture_output=True, timeout=120)


@requires_espeak
def test_cli_single_utterance_vad_events_alternatives_and_word_confidence(
    server: ServerThread, audio: dict[str, Path]
) -> None:
    options = ["--single-utterance", "--vad-events", "--alternatives", "3", "--word-confidence"]
    text = _asr("transcribe", str(audio["two"]), "--server", server.target, *options)
    assert text.returncode == 0, text.stderr.decode()
    lines = text.stdout.decode().splitlines()
    assert lines[0].startswith("[speech begins at ") and lines[-1].startswith("[end of single utterance at ")
    finals = [line for line in lines if not line.startswith(("[", "  "))]
    assert len(finals) == 1 and "tomorrow" in finals[0]
    words = lines[lines.index(finals[0]) + 1]
    assert words.startswith("  ") and all(item.endswith(")") for item in words.strip().split("  ")), words
    assert any(line.startswith("  #2 ") for line in lines), "the second alternative follows the final"
    assert not any(line.startswith("  #4 ") for line in lines)

    records = [
        json.loads(line)
        for line in _asr_ok("transcribe", str(audio["two"]), "--server", server.target, "--json", *options)
    ]
    *responses, summary = records
    kinds = [event["type"] for event in summary["speech_events"]]
    assert kinds[0] == "SPEECH_ACTIVITY_BEGIN" and kinds[-1] == "END_OF_SINGLE_UTTERANCE"
    assert summary["text"] == finals[0]
    final_alternatives = [
        result["alternatives"] for r in responses for result in r.get("results", []) if result.get("is_final")
    ]
    assert len(final_alternatives) == 1 and 2 <= len(final_alternatives[0]) <= 3


def _asr_ok(*args: str) -> list[str]:
    result = _asr(*args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().splitlines()


@requires_espeak
def test_cli_phrase_boosting(server: ServerThread, audio: dict[str, Path]) -> None:
    named = str(audio["named"])
    summary = json.loads(_asr_ok("transcribe", named, "--server", server.target, "--json", "--phrase", NAME)[-1])
    assert summary["text"] == NAMED
    boosted = _asr_ok(
        "transcribe", named, "--server", server.target, "--phrase", "zimmerman", "--phrase", NAME, "--boost", "8"
    )
    assert " ".join(boosted) == NAMED
    bad = _asr("transcribe", named, "--server", server.target, "--phrase", NAME, "--boost", "-1")
    assert bad.returncode == 1
    assert "INVALID_ARGUMENT" in bad.stderr.decode() and "speech_contexts[0].boost" in bad.stderr.decode()
