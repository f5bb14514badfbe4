"""Fuzzer of the request parser and the audio path of a real ``asr-server``, with hypothesis.

Starts an ``asr-server`` on 127.0.0.1 (free ports; greedy search, ``--beam-size 1``, so that
the requests that do reach the model cost little), then sends ``--requests`` generated calls,
``--workers`` at a time, over a few channels (blocking gRPC, one thread per worker), and checks what comes back.
Usage:
    python benchmarks/fuzz.py [--requests 100000] [--seed 0] [--workers 32] [--model-dir DIR]
        [--server-arg=--max-batch-size=16 ...] [--report reports/fuzz.json]

What is generated (hypothesis strategies, one case per call; ``cases`` below):

* ``RecognitionConfig`` / ``StreamingRecognitionConfig`` field values, each field valid most
  of the time and otherwise wild: unknown models, odd language codes (regions, underscores,
  blanks, unicode, very long strings, thousands of codes), sample rates around and far
  outside 8000-48000, channel counts and ``selected_channel`` in and out of range, encodings
  including unknown enum numbers, endpointing values over the whole uint32 range,
  ``multi_talker``, a missing ``config``.
* ``StreamingRecognize`` message sequences: configuration first or not, repeated, requests
  with no field set, empty audio, LINEAR16 audio of odd byte lengths, random bytes as audio,
  speech, silence, and rare messages of 1 to 4 MB.
* raw malformed protobuf: valid messages truncated or with a flipped byte, invalid UTF-8 in
  a string field, bad wire types, lengths past the end, random bytes; sent through a generic
  ``channel.stream_stream`` / ``unary_unary`` with identity serializers, so the server gets
  bytes that do not parse. ``Recognize`` calls get the same treatment as single requests.

Hypothesis draws small recipes (a size and a seed, not megabytes), which become wire bytes
just before sending (``materialize``). The oracle (``expectation``) parses those bytes with
the same protobuf library and derives the status the API documents (asr.proto, README):
OK for a valid request; INVALID_ARGUMENT for a bad configuration, bad audio, a message that
does not parse, audio before the configuration or a repeated configuration; either of the two
where the API leaves it open (a request with no field set after the configuration, lenient
spellings of a language code such as ``" EN_us"``, a Recognize audio length at the 60 s
limit).

Invariants, per call (a call may break several):

* ``status ...``: the status is one the oracle allows; a status outside that set is named for
  what it is: INTERNAL, UNKNOWN or CANCELLED for a client mistake, RESOURCE_EXHAUSTED that
  is not the stream limit (gRPC's "metadata size exceeds limit" when an error message is
  too large for the trailers), a hang (the call's deadline, ``--timeout``, passed).
* ``message over 1 KB``: the error message is at most 1024 bytes (UTF-8).

And every ``--check-every`` calls, and at the end: ``grpc.health.v1`` says SERVING, a
correct short stream of espeak-ng speech (sent as fast as the server reads it) ends OK with
a final result (non-empty text unless ``--allow-empty-transcript``), the server process is
alive; at the end also no stream still active (``asr_active_streams`` back to 0).

Prints counts by outcome and by violation, and writes a JSON report (default
``reports/fuzz.json``) with the counts, the throughput and at most ``--examples`` examples of
each violation (the input described field by field, with sizes instead of long values, and
the status and message). All traffic goes to loopback; the run is bounded by
``--requests`` and ``--time-limit``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from asr_client import asr_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

if __package__ in (None, ""):
    # Run as a script (python benchmarks/fuzz.py): the repository root makes the sibling
    # benchmark importable as benchmarks.grpc_load, the name mypy checks it under.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.grpc_load import LOOPBACK, ServerProcess, machine, scrape, synthesize  # noqa: E402

STREAM_METHOD = "/asr.v1.Recognizer/StreamingRecognize"
RECOGNIZE_METHOD = "/asr.v1.Recognizer/Recognize"
SERVICE = "asr.v1.Recognizer"

OK = "OK"
INVALID = "INVALID_ARGUMENT"
MAX_MESSAGE_BYTES = 1024
# Documented limits (asr.proto): sample rates, channels, Recognize audio length.
MIN_RATE, MAX_RATE = 8000, 48000
MAX_CHANNELS = 8
MAX_RECOGNIZE_SECONDS = 60.0
BYTES_PER_SAMPLE = {0: 2, 1: 2, 2: 1, 3: 1}  # ENCODING_UNSPECIFIED (= LINEAR16), LINEAR16, MULAW, ALAW
# FLAC and OGG_OPUS: container bytes whose header gives rate and channels. The fuzzer never
# writes a whole valid container, so any audio sent under them is a damaged stream.
CONTAINER_ENCODINGS = frozenset({4, 5})
# The admission limit's message (README: RESOURCE_EXHAUSTED "too many streams").
STREAM_LIMIT_TEXT = "concurrent streams"
CANARY_SENTENCE = "please call me back tomorrow morning"


# -- what the server serves ------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFacts:
    """What ListModels says about one model (what the oracle needs)."""

    name: str
    languages: tuple[str, ...]
    multi_talker: bool


@dataclass(frozen=True)
class Served:
    """The server's models; hashable, so strategies built for it can be cached."""

    models: tuple[ModelFacts, ...]
    default: str

    def resolve(self, name: str) -> ModelFacts | None:
        """The model a request naming ``name`` gets ("" is the default), or None."""
        wanted = name or self.default
        return next((m for m in self.models if m.name == wanted), None)


def served_models(channel: grpc.Channel, timeout: float = 10.0) -> Served:
    """ListModels, reduced to what the oracle needs."""
    call = channel.unary_unary(
        "/asr.v1.Recognizer/ListModels",
        request_serializer=asr_pb2.ListModelsRequest.SerializeToString,
        response_deserializer=asr_pb2.ListModelsResponse.FromString,
    )
    response = call(asr_pb2.ListModelsRequest(), timeout=timeout)
    models = tuple(ModelFacts(m.name, tuple(m.languages), m.multi_talker) for m in response.models)
    default = next((m.name for m in response.models if m.is_default), models[0].name if models else "")
    return Served(models, default)


# -- recipes: what hypothesis draws ------------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    """Bytes to make at send time: ``size`` bytes of speech, zeros or seeded random bytes."""

    source: str
    size: int
    seed: int = 0

    def make(self, speech: bytes) -> bytes:
        if self.size <= 0:
            return b""
        if self.source == "zeros":
            return bytes(self.size)
        if self.source == "random":
            return random.Random(self.seed).randbytes(self.size)
        # Speech, from an offset, repeated as often as needed for the size.
        offset = (self.seed % max(1, len(speech) // 2)) * 2
        reps = self.size // max(1, len(speech)) + 2
        return (speech[offset:] + speech * reps)[: self.size]


@dataclass(frozen=True)
class ConfigPart:
    """A request carrying ``streaming_config``."""

    config: asr_pb2.StreamingRecognitionConfig


@dataclass(frozen=True)
class AudioPart:
    """A request carrying ``audio_content``."""

    blob: Blob


@dataclass(frozen=True)
class EmptyPart:
    """A ``StreamingRecognizeRequest`` with no field set."""


@dataclass(frozen=True)
class RecognizePart:
    """A ``RecognizeRequest``; ``config`` None leaves the field unset."""

    config: asr_pb2.RecognitionConfig | None
    blob: Blob


@dataclass(frozen=True)
class RawPart:
    """Wire bytes of ``base`` (or random bytes when None) broken by ``mutation``."""

    base: ConfigPart | AudioPart | RecognizePart | None
    mutation: str
    seed: int


Part = ConfigPart | AudioPart | EmptyPart | RecognizePart | RawPart


@dataclass(frozen=True)
class Case:
    """One call: ``method`` is "stream" (StreamingRecognize) or "recognize" (one request)."""

    method: str
    parts: tuple[Part, ...]


MUTATIONS = ("truncate", "flip", "bad-utf8", "bad-wire-type", "length-past-end", "open-group", "random")


def _serialize(part: Part, speech: bytes) -> bytes:
    if isinstance(part, ConfigPart):
        return asr_pb2.StreamingRecognizeRequest(streaming_config=part.config).SerializeToString()
    if isinstance(part, AudioPart):
        return asr_pb2.StreamingRecognizeRequest(audio_content=part.blob.make(speech)).SerializeToString()
    if isinstance(part, EmptyPart):
        return b""
    if isinstance(part, RecognizePart):
        request = asr_pb2.RecognizeRequest(audio_content=part.blob.make(speech))
        if part.config is not None:
            request.config.CopyFrom(part.config)
        return request.SerializeToString()
    return _mutate(part, speech)


def _mutate(part: RawPart, speech: bytes) -> bytes:
    """Break a message's wire bytes; most results no longer parse (the oracle checks)."""
    rng = random.Random(part.seed)
    data = _serialize(part.base, speech) if part.base is not None else b""
    if part.mutation == "truncate" and len(data) > 1:
        return data[: rng.randrange(1, len(data))]
    if part.mutation == "flip" and data:
        position = rng.randrange(len(data))
        return data[:position] + bytes([data[position] ^ rng.randrange(1, 256)]) + data[position + 1 :]
    if part.mutation == "bad-utf8":
        # Field 1 (streaming_config / config) > field 1 (config / model): invalid UTF-8 in a string.
        model = b"\x0a\x02\xff\xfe"
        inner = b"\x0a" + bytes([len(model)]) + model
        return inner if part.base is None or isinstance(part.base, RecognizePart) else b"\x0a\x06" + inner
    if part.mutation == "bad-wire-type":
        return data + bytes([rng.choice((0x0E, 0x0F, 0x16, 0x17))])  # wire types 6 and 7 do not exist
    if part.mutation == "length-past-end":
        return data + b"\x12\xff\xff\x03" + rng.randbytes(rng.randrange(0, 16))  # field 2, 65535 bytes, fewer follow
    if part.mutation == "open-group":
        return data + b"\x1b"  # field 3, start group, never ended
    return rng.randbytes(rng.randrange(1, 64))


def materialize(case: Case, speech: bytes) -> list[bytes]:
    """The wire bytes of each request of ``case``."""
    return [_serialize(part, speech) for part in case.parts]


# -- the oracle: what the API documents for these bytes --------------------------------------
@dataclass(frozen=True)
class Expectation:
    """The statuses the API allows for a call, and why (the problems the oracle saw)."""

    codes: frozenset[str]
    reasons: tuple[str, ...]


# A BCP-47-shaped tag: primary subtag of 2-3 letters, then subtags of 1-8 letters or digits.
STRICT_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


def language_verdict(code: str, languages: Sequence[str]) -> str:
    """The verdict on one language code for a model with ``languages``.

    "ok": a well-formed tag of a model language; "bad": no model language however read;
    "either": lenient spellings the API neither promises nor forbids (" en", "EN_us").
    """
    known = {language.lower() for language in languages}
    if STRICT_TAG.fullmatch(code) and (code.lower() in known or code.split("-")[0].lower() in known):
        return "ok"
    loose = code.strip().lower().replace("_", "-")
    return "either" if loose in known or loose.split("-")[0] in known else "bad"


def config_problems(config: asr_pb2.RecognitionConfig, served: Served) -> tuple[list[str], list[str]]:
    """(definite problems, problems the API leaves open) of a RecognitionConfig."""
    definite: list[str] = []
    open_: list[str] = []
    model = served.resolve(config.model)
    if model is None:
        definite.append("unknown model")
    container = config.encoding in CONTAINER_ENCODINGS
    if config.encoding not in BYTES_PER_SAMPLE and not container:
        definite.append("unknown encoding")
    if not (container and config.sample_rate_hertz == 0) and not MIN_RATE <= config.sample_rate_hertz <= MAX_RATE:
        definite.append("sample rate out of range")
    channels = config.audio_channel_count or 1
    if not 1 <= channels <= MAX_CHANNELS:
        definite.append("channel count out of range")
    elif config.HasField("selected_channel") and config.selected_channel >= channels and not container:
        definite.append("selected_channel out of range")
    if model is not None:
        verdicts = {language_verdict(code, model.languages) for code in config.language_codes}
        if "bad" in verdicts:
            definite.append("unsupported language")
        elif "either" in verdicts:
            open_.append("leniently spelled language")
        if config.multi_talker and not model.multi_talker:
            definite.append("multi_talker unsupported")
    return definite, open_


def _parse(data: bytes, message_type: Any) -> Any:
    try:
        return message_type.FromString(data)
    except DecodeError:
        return None


def _verdict(definite: list[str], open_: list[str]) -> Expectation:
    if definite:
        return Expectation(frozenset({INVALID}), tuple(definite))
    if open_:
        return Expectation(frozenset({OK, INVALID}), tuple(open_))
    return Expectation(frozenset({OK}), ())


def stream_expectation(wires: Sequence[bytes], served: Served) -> Expectation:
    """The statuses allowed for a StreamingRecognize call sending ``wires``, then half-closing."""
    messages = [_parse(data, asr_pb2.StreamingRecognizeRequest) for data in wires]
    definite: list[str] = []
    open_: list[str] = []
    first = messages[0] if messages else None
    encoding = None
    if not messages:
        definite.append("no request")
    elif first is None:
        definite.append("malformed request 0")
    elif first.WhichOneof("streaming_request") != "streaming_config":
        definite.append("first request is not streaming_config")
    else:
        bad, unsure = config_problems(first.streaming_config.config, served)
        definite += bad
        open_ += unsure
        encoding = first.streaming_config.config.encoding
    for index, message in enumerate(messages[1:], 1):
        if message is None:
            definite.append(f"malformed request {index}")
            continue
        kind = message.WhichOneof("streaming_request")
        if kind == "streaming_config":
            definite.append(f"streaming_config again in request {index}")
        elif kind is None:
            open_.append(f"request {index} has no field set")
        elif encoding in (0, 1) and len(message.audio_content) % 2:
            definite.append(f"odd-length LINEAR16 audio in request {index}")
        elif encoding in CONTAINER_ENCODINGS and message.audio_content:
            definite.append(f"audio of request {index} is not a whole FLAC/Ogg stream")
    return _verdict(definite, open_)


def recognize_expectation(wire: bytes, served: Served) -> Expectation:
    """The statuses allowed for a Recognize call with request bytes ``wire``."""
    request = _parse(wire, asr_pb2.RecognizeRequest)
    if request is None:
        return _verdict(["malformed request"], [])
    definite, open_ = config_problems(request.config, served)
    if definite:
        return _verdict(definite, open_)
    config = request.config
    if config.encoding in CONTAINER_ENCODINGS:  # Recognize parses the whole file first
        return _verdict(["audio is not a whole FLAC/Ogg file"], open_)
    sample_bytes = BYTES_PER_SAMPLE[config.encoding]
    seconds = len(request.audio_content) / (sample_bytes * (config.audio_channel_count or 1) * config.sample_rate_hertz)
    if seconds > MAX_RECOGNIZE_SECONDS + 0.01:
        definite.append("audio longer than 60 s")
    elif seconds > MAX_RECOGNIZE_SECONDS - 0.01:
        open_.append("audio at the 60 s limit")
    if sample_bytes == 2 and len(request.audio_content) % 2:
        definite.append("odd-length LINEAR16 audio")
    return _verdict(definite, open_)


def expectation(case: Case, wires: Sequence[bytes], served: Served) -> Expectation:
    if case.method == "recognize":
        return recognize_expectation(wires[0], served)
    return stream_expectation(wires, served)


# -- calls --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How a call ended: ``code`` is "OK" or a status code name."""

    code: str
    details: str = ""
    responses: int = 0
    finals: int = 0
    transcript: str = ""
    seconds: float = 0.0


def _summarize_responses(raw: Iterable[bytes], response_type: Any) -> tuple[int, int, str]:
    count = finals = 0
    texts = []
    for data in raw:
        count += 1
        for result in response_type.FromString(data).results:
            if result.is_final:
                finals += 1
                if result.alternatives and result.alternatives[0].transcript:
                    texts.append(result.alternatives[0].transcript)
    return count, finals, " ".join(texts)


def execute(channel: grpc.Channel, case: Case, wires: Sequence[bytes], timeout: float) -> Outcome:
    """Send ``wires`` as they are (identity serializers) and wait for the end of the call.

    Blocking gRPC, not grpc.aio: an aio client that is still writing when the server ends the
    call may report INTERNAL "Internal error from Core" instead of the server's status
    (grpc/grpc#36066), which would read as a server bug here.
    """
    started = time.monotonic()
    try:
        if case.method == "recognize":
            reply = channel.unary_unary(RECOGNIZE_METHOD)(wires[0], timeout=timeout)
            count, finals, text = _summarize_responses([reply], asr_pb2.RecognizeResponse)
        else:
            raw = list(channel.stream_stream(STREAM_METHOD)(iter(wires), timeout=timeout))
            count, finals, text = _summarize_responses(raw, asr_pb2.StreamingRecognizeResponse)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (error.details() if isinstance(error, grpc.Call) else str(error)) or ""
        return Outcome(code.name, details, seconds=time.monotonic() - started)
    return Outcome(OK, "", count, finals, text, time.monotonic() - started)


def violations(expected: Expectation, outcome: Outcome) -> list[str]:
    """The invariants ``outcome`` breaks (empty: none)."""
    found = []
    code = outcome.code
    if code not in expected.codes:
        if code == "DEADLINE_EXCEEDED":
            found.append("hang: DEADLINE_EXCEEDED")
        elif code in ("INTERNAL", "UNKNOWN", "CANCELLED"):
            mistake = "a client mistake" if INVALID in expected.codes else "a valid request"
            found.append(f"status {code} for {mistake}")
        elif code == "RESOURCE_EXHAUSTED" and STREAM_LIMIT_TEXT not in outcome.details:
            found.append("status RESOURCE_EXHAUSTED not from the stream limit")
        else:
            found.append(f"status {code} where {'/'.join(sorted(expected.codes))} expected")
    if len(outcome.details.encode()) > MAX_MESSAGE_BYTES:
        found.append("message over 1 KB")
    return found


# -- the server still works -------------------------------------------------------------------
def health_serving(channel: grpc.Channel, timeout: float = 10.0) -> bool:
    """grpc.health.v1 says the Recognizer service is SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def canary_case(speech: bytes, rate: int, chunk_bytes: int = 3200) -> Case:
    """A correct short stream: default model, LINEAR16 mono speech in 100 ms-ish chunks."""
    config = asr_pb2.StreamingRecognitionConfig(
        config=asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR16, sample_rate_hertz=rate), interim_results=True
    )
    starts = range(0, len(speech), chunk_bytes)
    chunks = [AudioPart(Blob("speech", min(chunk_bytes, len(speech) - start), start // 2)) for start in starts]
    return Case("stream", (ConfigPart(config), *chunks))


def server_works(
    channel: grpc.Channel, speech: bytes, rate: int, *, require_text: bool, timeout: float = 60.0
) -> list[str]:
    """Health, then a correct stream transcribes; returns the problems (empty: it works)."""
    problems = []
    if not health_serving(channel):
        problems.append("health check not SERVING")
    case = canary_case(speech, rate)
    outcome = execute(channel, case, materialize(case, speech), timeout)
    if outcome.code != OK:
        problems.append(f"canary stream failed: {outcome.code}: {outcome.details[:200]}")
    elif not outcome.finals:
        problems.append("canary stream ended without a final result")
    elif require_text and not outcome.transcript:
        problems.append("canary stream's final result is empty")
    return problems


# -- strategies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """Which input classes ``cases`` draws (the CI test leaves out the known server bugs)."""

    malformed: bool = True  # raw bytes that do not parse
    long_strings: bool = True  # model names and language codes up to 200k characters, 3000 codes
    huge_max: int = 4 * 1024 * 1024  # the largest audio message (0: none over 64 kB)
    recognize: bool = True  # Recognize calls besides StreamingRecognize
    max_codes: int = 8  # language codes in a list of mixed codes (a separate list repeats one code 5-3000 times)


INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A choice among strategies with integer weights.

    ``one_of`` would drop repeated strategies, so the choice is an index drawn from a list
    holding each strategy's index ``weight`` times.
    """
    strategies = [strategy for _, strategy in choices]
    indexes = [index for index, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(indexes).flatmap(lambda index: strategies[index])


def _long_text() -> st.SearchStrategy[str]:
    """60 to 200k characters; long values cost hypothesis nothing to draw: a character times a length."""
    chars = st.sampled_from(["x", "é", "€", "\U0001f600", "\x00", "a-b"])  # 1 to 4 UTF-8 bytes, escaped by repr
    return st.builds(lambda char, n: char * n, chars, st.integers(60, 200_000))


def _string_strategy(known: Sequence[str], long_strings: bool) -> st.SearchStrategy[str]:
    choices: list[tuple[int, st.SearchStrategy[str]]] = [
        (3, st.sampled_from(list(known) or [""])),
        (1, st.text(max_size=12)),
        (1, st.sampled_from(["", " ", "-", "_", "\x00", "nope", "x-private", "en-", "-en", "und", "i-klingon"])),
    ]
    if long_strings:
        choices.append((1, _long_text()))
    else:
        choices.append((1, st.builds(lambda char, n: char * n, st.sampled_from(["x", "é", "€"]), st.integers(13, 40))))
    return _weighted(*choices)


def _language_codes(served: Served, long_strings: bool, max_codes: int) -> st.SearchStrategy[list[str]]:
    languages = sorted({lang for model in served.models for lang in model.languages})
    variants = [*languages, *(f"{lang}-US" for lang in languages), *(f"{lang.upper()}_gb" for lang in languages)]
    variants += [f" {lang} " for lang in languages] + ["fr", "de-DE", "zz", "zh-Hant-TW", "EN-us-x-foo"]
    one = _weighted((4, st.sampled_from(variants)), (1, _string_strategy(languages, long_strings)))
    lists = [(6, st.just([])), (5, st.lists(one, max_size=min(3, max_codes))), (1, st.lists(one, max_size=max_codes))]
    if long_strings:
        lists.append(
            (1, st.builds(lambda code, n: [code] * n, st.sampled_from(["zz", *languages]), st.integers(5, 3000)))
        )
        if max_codes >= 5:  # enough long codes that an error message naming each would be large
            lists.append((1, st.lists(_long_text(), min_size=5, max_size=max_codes)))
    return _weighted(*lists)


@st.composite
def _recognition_config(draw: Any, strategies: dict[str, st.SearchStrategy[Any]]) -> asr_pb2.RecognitionConfig:
    """Each field valid about five times in six, else wild (about a third of the configs are valid)."""

    def field_value(name: str) -> Any:
        wild = draw(st.integers(0, 5)) == 0
        return draw(strategies[f"{name}.wild" if wild else name])

    config = asr_pb2.RecognitionConfig(
        model=field_value("model"),
        encoding=field_value("encoding"),
        sample_rate_hertz=field_value("rate"),
        audio_channel_count=field_value("channels"),
        enable_word_time_offsets=draw(st.booleans()),
        multi_talker=draw(st.integers(0, 7)) == 0,
    )
    if draw(st.integers(0, 5)) == 0:
        config.selected_channel = draw(strategies["selected.wild"])
    elif (selected := draw(strategies["selected"])) is not None:
        # A channel the audio has (when its channel count is in range at all).
        config.selected_channel = selected % min(max(1, config.audio_channel_count), MAX_CHANNELS)
    config.language_codes.extend(field_value("languages"))
    if draw(st.booleans()):
        config.endpointing.trailing_silence_ms = field_value("silence")
        config.endpointing.max_utterance_ms = field_value("utterance")
    return config


def _config_strategies(served: Served, knobs: Knobs) -> dict[str, st.SearchStrategy[Any]]:
    names = [model.name for model in served.models]
    rates = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]
    return {
        "model": st.sampled_from(["", *names]),
        "model.wild": _string_strategy(names, knobs.long_strings),
        "encoding": st.sampled_from([0, 1, 2, 3]),
        "encoding.wild": _weighted((2, st.integers(4, 10)), (1, INT32)),
        "rate": _weighted((3, st.sampled_from(rates)), (1, st.integers(MIN_RATE, MAX_RATE))),
        "rate.wild": _weighted(
            (2, st.integers(MIN_RATE - 10, MIN_RATE - 1)),
            (2, st.integers(MAX_RATE + 1, MAX_RATE + 10)),
            (1, st.sampled_from([0, 96000, 192000, -16000])),
            (1, INT32),
        ),
        "channels": st.integers(0, MAX_CHANNELS),
        "channels.wild": _weighted((2, st.integers(MAX_CHANNELS + 1, 64)), (1, INT32)),
        "selected": st.one_of(st.none(), st.integers(0, 7)),
        "selected.wild": _weighted((3, st.integers(1, 100)), (1, UINT32)),
        "languages": _language_codes(served, long_strings=False, max_codes=3),
        "languages.wild": _language_codes(served, knobs.long_strings, knobs.max_codes),
        "silence": st.sampled_from([0, 100, 300, 800, 2000]),
        "silence.wild": UINT32,
        "utterance": st.sampled_from([0, 1000, 5000, 20000]),
        "utterance.wild": UINT32,
    }


def _blob(sizes: st.SearchStrategy[int]) -> st.SearchStrategy[Blob]:
    return st.builds(Blob, st.sampled_from(["speech", "zeros", "random"]), sizes, st.integers(0, 2**31))


def _part_strategies(served: Served, knobs: Knobs) -> dict[str, st.SearchStrategy[Any]]:
    """The strategies a case's requests are drawn from, by kind."""
    config = _recognition_config(_config_strategies(served, knobs))
    streaming_config = st.builds(
        lambda recognition, interim, missing: (
            asr_pb2.StreamingRecognitionConfig(interim_results=interim)
            if missing
            else asr_pb2.StreamingRecognitionConfig(config=recognition, interim_results=interim)
        ),
        config,
        st.booleans(),
        st.integers(0, 30).map(lambda roll: roll == 0),  # now and then no config at all
    ).map(ConfigPart)
    # Audio sizes: a few hundred milliseconds at most in the usual chunks, so that valid calls
    # cost the model little; odd lengths; rare big messages.
    even = st.integers(0, 2000).map(lambda n: 2 * n)
    parts: dict[str, st.SearchStrategy[Any]] = {
        "config": streaming_config,
        "audio": _blob(even).map(AudioPart),
        "odd": _blob(st.integers(0, 2000).map(lambda n: 2 * n + 1)).map(AudioPart),
        "any": _blob(st.integers(0, 16000)).map(AudioPart),
        "empty-audio": st.just(AudioPart(Blob("zeros", 0))),
        "empty": st.just(EmptyPart()),
        "huge": _blob(st.integers(65536, max(65536, knobs.huge_max))).map(AudioPart),
        "recognize": st.builds(
            RecognizePart,
            _weighted((6, config), (1, st.none())),
            _blob(_weighted((8, even), (1, st.integers(0, 16001)))),
        ),
        # At 8-16 kHz mono LINEAR16 mostly past Recognize's 60 s; at high rates or many channels not.
        "huge-recognize": st.builds(
            RecognizePart, config, _blob(st.integers(65536, max(65536, min(knobs.huge_max, 16 * 1024 * 1024))))
        ),
    }
    parts["raw"] = st.builds(
        RawPart,
        _weighted((2, parts["config"]), (1, parts["audio"]), (1, st.none())),
        st.sampled_from(MUTATIONS),
        st.integers(0, 2**31),
    )
    parts["raw-recognize"] = st.builds(RawPart, parts["recognize"], st.sampled_from(MUTATIONS), st.integers(0, 2**31))
    return parts


def _later_part(parts: dict[str, st.SearchStrategy[Any]], knobs: Knobs) -> st.SearchStrategy[Part]:
    choices = [
        (50, parts["audio"]),
        (6, parts["odd"]),
        (12, parts["any"]),
        (4, parts["empty-audio"]),
        (3, parts["empty"]),
        (3, parts["config"]),
    ]
    if knobs.malformed:
        choices.append((3, parts["raw"]))
    return _weighted(*choices)


def cases(served: Served, knobs: Knobs = Knobs()) -> st.SearchStrategy[Case]:
    """Fuzz cases for a server serving ``served``: streams mostly, Recognize calls now and then."""
    parts = _part_strategies(served, knobs)
    first_choices = [(30, parts["config"]), (1, parts["audio"]), (1, parts["empty"])]
    if knobs.malformed:
        first_choices.append((2, parts["raw"]))
    first = _weighted(*first_choices)
    later = _later_part(parts, knobs)
    streams = st.builds(lambda head, tail: Case("stream", (head, *tail)), first, st.lists(later, max_size=8))
    # Weights per 1000 cases. Messages of megabytes are rare: they cost transfer and, where the
    # request is valid, minutes of audio through the model.
    choices = [(800, streams), (10, st.just(Case("stream", ())))]
    if knobs.huge_max:
        huge = st.builds(
            lambda head, big, tail: Case("stream", (head, big, *tail)),
            parts["config"],
            parts["huge"],
            st.lists(later, max_size=2),
        )
        choices.append((8, huge))
    if knobs.recognize:
        choices.append((140, parts["recognize"].map(lambda part: Case("recognize", (part,)))))
        if knobs.huge_max:
            choices.append((8, parts["huge-recognize"].map(lambda part: Case("recognize", (part,)))))
        if knobs.malformed:
            choices.append((40, parts["raw-recognize"].map(lambda part: Case("recognize", (part,)))))
    return _weighted(*choices)


# -- descriptions for the report --------------------------------------------------------------
def _short(value: str, keep: int = 24) -> str:
    return repr(value) if len(value) <= keep else f"{value[:keep]!r}...({len(value)} chars)"


def describe_config(config: asr_pb2.RecognitionConfig) -> str:
    """The fields of a config, long values as their start and length."""
    codes = list(config.language_codes)
    languages = (
        "["
        + ", ".join(_short(c, 16) for c in codes[:4])
        + (f", ... {len(codes)} codes" if len(codes) > 4 else "")
        + "]"
    )
    selected = config.selected_channel if config.HasField("selected_channel") else None
    return (
        f"model={_short(config.model)} encoding={config.encoding} rate={config.sample_rate_hertz} "
        f"channels={config.audio_channel_count} selected={selected} languages={languages} "
        f"endpointing=({config.endpointing.trailing_silence_ms}, {config.endpointing.max_utterance_ms}) "
        f"multi_talker={config.multi_talker}"
    )


def describe_part(part: Part, wire: bytes) -> str:
    if isinstance(part, ConfigPart):
        if not part.config.HasField("config"):
            return "streaming_config(no config)"
        return f"streaming_config({describe_config(part.config.config)})"
    if isinstance(part, AudioPart):
        return f"audio({part.blob.source}, {part.blob.size} bytes)"
    if isinstance(part, EmptyPart):
        return "request with no field set"
    if isinstance(part, RecognizePart):
        config = "no config" if part.config is None else describe_config(part.config)
        return f"recognize({config}; audio {part.blob.source}, {part.blob.size} bytes)"
    base = "random" if part.base is None else type(part.base).__name__
    return f"raw({part.mutation} of {base}, {len(wire)} bytes: {wire[:48].hex()}{'...' if len(wire) > 48 else ''})"


def describe(case: Case, wires: Sequence[bytes]) -> list[str]:
    return [describe_part(part, wire) for part, wire in zip(case.parts, wires, strict=True)]


# -- generation in a thread, calls in worker threads --------------------------------------------
class StopGenerationError(Exception):
    """Raised into hypothesis's loop to end the generation early."""


def generate(strategy: st.SearchStrategy[Case], count: int, seed: int, put: Callable[[Case], None]) -> None:
    """Run hypothesis's generation phase for ``count`` examples, handing each case to ``put``.

    ``put`` may raise ``StopGenerationError`` to end early. No database, no shrinking: the cases
    are inputs for the server, not assertions of this process.
    """

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        # Quiet: StopGenerationError counts as a failing example, whose repr could be megabytes.
        verbosity=Verbosity.quiet,
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def collect(case: Case) -> None:
        put(case)

    with contextlib.suppress(StopGenerationError):
        collect()


@dataclass
class Tally:
    """What the calls did: outcomes, violations and a few examples of each."""

    max_examples: int
    calls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    expected_vs_got: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    checks: list[dict[str, object]] = field(default_factory=list)
    call_seconds_max: float = 0.0

    def add(self, index: int, case: Case, wires: Sequence[bytes], expected: Expectation, outcome: Outcome) -> None:
        self.calls += 1
        self.outcomes[outcome.code] += 1
        self.by_method[f"{case.method} {outcome.code}"] += 1
        self.expected_vs_got[f"{'/'.join(sorted(expected.codes))} -> {outcome.code}"] += 1
        self.call_seconds_max = max(self.call_seconds_max, outcome.seconds)
        for violation in violations(expected, outcome):
            self.violations[violation] += 1
            kept = self.examples.setdefault(violation, [])
            if len(kept) < self.max_examples:
                kept.append(
                    {
                        "case": index,
                        "method": case.method,
                        "requests": describe(case, wires),
                        "expected": sorted(expected.codes),
                        "oracle": list(expected.reasons),
                        "got": outcome.code,
                        "message_bytes": len(outcome.details.encode()),
                        "message": outcome.details[:300],
                    }
                )


class Fuzzer:
    """``workers`` threads calling the server with cases that a hypothesis thread generates."""

    def __init__(self, target: str, served: Served, speech: bytes, rate: int, args: argparse.Namespace) -> None:
        self.target = target
        self.served = served
        self.speech = speech
        self.rate = rate
        self.args = args
        self.tally = Tally(args.examples)
        self._lock = threading.Lock()
        self._todo: queue.Queue[tuple[int, Case] | None] = queue.Queue(maxsize=4 * args.workers)
        self._checking = threading.Lock()
        self._failure: list[BaseException] = []

    def run(self, pid: int | None) -> Tally:
        # A channel (HTTP/2 connection) per 8 workers, so their frames do not queue on one socket.
        options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
        channels = [grpc.insecure_channel(self.target, options=options) for _ in range(max(1, self.args.workers // 8))]
        try:
            producer = threading.Thread(target=self._produce, name="fuzz-generate", daemon=True)
            producer.start()
            workers = [
                threading.Thread(
                    target=self._work, args=(channels[i % len(channels)], pid), name=f"fuzz-{i}", daemon=True
                )
                for i in range(self.args.workers)
            ]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
            producer.join(5)
            if self._failure:
                raise self._failure[0]
            self._final_checks(channels[0], pid)
        finally:
            for channel in channels:
                channel.close()
        return self.tally

    def _produce(self) -> None:
        deadline = time.monotonic() + self.args.time_limit
        produced = 0

        def put(case: Case) -> None:
            nonlocal produced
            if time.monotonic() > deadline:
                raise StopGenerationError
            self._todo.put((produced, case))
            produced += 1

        try:
            generate(cases(self.served), self.args.requests, self.args.seed, put)
        except BaseException as error:  # a broken strategy: re-raised by run, not lost in this thread
            self._failure.append(error)
        finally:
            for _ in range(self.args.workers):
                self._todo.put(None)

    def _work(self, channel: grpc.Channel, pid: int | None) -> None:
        while (item := self._todo.get()) is not None:
            number, case = item
            wires = materialize(case, self.speech)
            expected = expectation(case, wires, self.served)
            outcome = execute(channel, case, wires, self.args.timeout)
            with self._lock:
                self.tally.add(number, case, wires, expected, outcome)
                calls = self.tally.calls
            if calls % 5000 == 0:
                print(f"fuzz: {calls} calls, violations {dict(self.tally.violations)}", flush=True)
            # The periodic check runs beside the other workers' calls: the server is checked
            # under fuzzing load. One at a time; a check still running skips the next.
            if calls % self.args.check_every == 0 and self._checking.acquire(blocking=False):
                try:
                    self._check(channel, calls, pid)
                finally:
                    self._checking.release()

    def _check(self, channel: grpc.Channel, after: int, pid: int | None) -> None:
        problems = server_works(channel, self.speech, self.rate, require_text=not self.args.allow_empty_transcript)
        if pid is not None and not Path(f"/proc/{pid}").exists():
            problems.append("server process is gone")
        with self._lock:
            self.tally.checks.append({"after_calls": after, "problems": problems})
            for problem in problems:
                self.tally.violations[f"check: {problem.split(':')[0]}"] += 1

    def _final_checks(self, channel: grpc.Channel, pid: int | None) -> None:
        self._check(channel, self.tally.calls, pid)
        active = None
        for _ in range(40):  # the last calls' slots come back within a model step or two
            active = sum(
                scrape(self.args.metrics_url, m.name).get("asr_active_streams", 0.0) for m in self.served.models
            )
            if active <= 0:
                break
            time.sleep(0.25)
        self.tally.checks.append({"after_calls": self.tally.calls, "active_streams_at_end": active})
        if active:
            self.tally.violations["check: streams still active after the run"] += 1


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000, help="calls to make (hypothesis examples)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed: the same seed, the same cases")
    parser.add_argument("--workers", type=int, default=32, help="concurrent calls")
    parser.add_argument("--report", type=Path, default=Path("reports/fuzz.json"))
    parser.add_argument("--model-dir", type=Path, default=None, help="checkpoint to serve (default: the bundled model)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra asr-server flag, e.g. --server-arg=--max-batch-size=16 (after --beam-size, so it may override)",
    )
    parser.add_argument("--beam-size", type=int, default=1, help="search of the started server (1: greedy, cheap)")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline of each call, seconds (past it: a hang)")
    parser.add_argument("--check-every", type=int, default=1000, help="calls between health and canary checks")
    parser.add_argument("--examples", type=int, default=5, help="examples kept per violation")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds of fuzzing at most")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument(
        "--allow-empty-transcript",
        action="store_true",
        help="the canary needs a final result, not text (for random-init models)",
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.workers < 1 or args.check_every < 1 or args.timeout <= 0:
        parser.error("--requests, --workers, --check-every and --timeout must be positive")
    return args


def print_summary(tally: Tally, wall: float) -> None:
    print(f"fuzz: {tally.calls} calls in {wall:.1f} s ({tally.calls / wall:.0f} calls/s)")
    print("outcomes:      " + ", ".join(f"{code} {n}" for code, n in tally.outcomes.most_common()))
    print("by method:     " + ", ".join(f"{key} {n}" for key, n in tally.by_method.most_common()))
    print("expected->got: " + ", ".join(f"{key} {n}" for key, n in tally.expected_vs_got.most_common()))
    if not tally.violations:
        print("violations:    none")
    for violation, n in tally.violations.most_common():
        example = (tally.examples.get(violation) or [{}])[0]
        print(f"VIOLATION {violation}: {n}  e.g. {example.get('requests')} -> {example.get('got')}")


def _fuzz(args: argparse.Namespace, target: str, pid: int | None, speech: bytes, rate: int) -> tuple[Served, Tally]:
    with grpc.insecure_channel(target) as channel:
        served = served_models(channel)
    print(f"fuzz: models {[m.name for m in served.models]} (default {served.default}), {args.workers} workers")
    return served, Fuzzer(target, served, speech, rate, args).run(pid)


def _speech() -> tuple[bytes, int]:
    """The canary's (and the "speech" blobs') audio: one espeak-ng sentence, LINEAR16 mono."""
    import tempfile

    from asr_client import read_audio_file

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        audio = read_audio_file(synthesize([CANARY_SENTENCE], Path(tmp))[0])
    return audio.data, audio.sample_rate


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    speech, rate = _speech()
    log_path = args.report.with_suffix(".server.log")
    extra = [f"--beam-size={args.beam_size}", *args.server_arg]
    server = ServerProcess(args.model_dir, max(64, 2 * args.workers + 8), extra, log_path)
    print(f"fuzz: starting asr-server ({args.model_dir or 'its default model'}), log {log_path}")
    server.start(args.startup_timeout)
    pid = server.process.pid if server.process else None
    args.metrics_url = f"http://{LOOPBACK}:{server.metrics_port}/metrics"
    started = time.monotonic()
    try:
        served, tally = _fuzz(args, f"{LOOPBACK}:{server.port}", pid, speech, rate)
    finally:
        wall = time.monotonic() - started
        alive = server.process is not None and server.process.poll() is None
        server.stop()
    print_summary(tally, wall)
    report = {
        "benchmark": "fuzz",
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed,
        "requests": args.requests,
        "workers": args.workers,
        "models": [m.name for m in served.models],
        "server_args": extra,
        "machine": machine(),
        "wall_seconds": wall,
        "calls": tally.calls,
        "calls_per_second": tally.calls / wall if wall > 0 else None,
        "slowest_call_seconds": tally.call_seconds_max,
        "server_alive_at_end": alive,
        "outcomes": dict(tally.outcomes.most_common()),
        "by_method": dict(tally.by_method.most_common()),
        "expected_vs_got": dict(tally.expected_vs_got.most_common()),
        "violations": dict(tally.violations.most_common()),
        "examples": tally.examples,
        "checks": tally.checks,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
