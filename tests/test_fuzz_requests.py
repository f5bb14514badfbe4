"""Fuzzed requests against an in-process server: the CI version of benchmarks/fuzz.py.

A few hundred hypothesis cases (derandomized, so every run sends the same ones) from the
benchmark's own strategies, oracle and invariants, against ``ServerThread`` on the random-init
model: each call ends with a status the API documents for its input (INVALID_ARGUMENT for
client mistakes, never INTERNAL, UNKNOWN or CANCELLED, nor RESOURCE_EXHAUSTED from an
oversized error message), every error message is at most 1 KB, and every 50 calls health is
SERVING and a correct stream still ends with a final result; at the end no stream holds a slot.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from asr_harness import ServerThread, requires_espeak, synthesize, wait_until
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

pytestmark = requires_espeak

ROOT = Path(__file__).resolve().parents[1]


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "benchmarks" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()

# The benchmark's input classes, smaller: messages up to 256 kB (the model is cheap, transfers
# are not), and at most 3 mixed language codes in a list (the test below covers long lists of
# multi-byte codes).
CI_KNOBS = fuzz.Knobs(huge_max=256 * 1024, max_codes=3)
CHECK_EVERY = 50
_calls = itertools.count(1)


@pytest.fixture(scope="module")
def server(random_model_dir: Path) -> Iterator[ServerThread]:
    with ServerThread([random_model_dir], max_streams=8, max_batch_size=8) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
    with grpc.insecure_channel(server.target, options=options) as opened:
        yield opened


@pytest.fixture(scope="module")
def served(channel: grpc.Channel) -> Any:
    return fuzz.served_models(channel)


@dataclass(frozen=True, repr=False)
class Speech:
    """The canary's audio; its repr is short, as hypothesis prints a failing test's arguments."""

    pcm: bytes
    rate: int

    def __repr__(self) -> str:
        return f"Speech({len(self.pcm)} bytes at {self.rate} Hz)"


@pytest.fixture(scope="module")
def speech() -> Speech:
    return Speech(*synthesize(fuzz.CANARY_SENTENCE))


def _call(channel: grpc.Channel, served: Any, case: Any, pcm: bytes) -> tuple[list[str], str]:
    """Send one case; returns the invariants it broke and a description for the assertion."""
    wires = fuzz.materialize(case, pcm)
    expected = fuzz.expectation(case, wires, served)
    outcome = fuzz.execute(channel, case, wires, timeout=30)
    # Shown by pytest --hypothesis-show-statistics: what the cases covered.
    event(f"{case.method}: oracle {'/'.join(sorted(expected.codes))}, got {outcome.code}")
    described = (
        f"{fuzz.describe(case, wires)}: oracle {sorted(expected.codes)} {list(expected.reasons)}, "
        f"got {outcome.code} ({len(outcome.details.encode())} bytes) {outcome.details[:300]!r}"
    )
    return fuzz.violations(expected, outcome), described


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzzed_requests_keep_the_invariants(
    data: st.DataObject, channel: grpc.Channel, served: Any, speech: Speech
) -> None:
    case = data.draw(fuzz.cases(served, CI_KNOBS), label="case")
    broken, described = _call(channel, served, case, speech.pcm)
    assert not broken, f"{broken}: {described}"
    if next(_calls) % CHECK_EVERY == 0:
        assert fuzz.server_works(channel, speech.pcm, speech.rate, require_text=False) == []


def test_server_still_works_and_holds_no_stream_after_fuzzing(
    server: ServerThread, channel: grpc.Channel, speech: Speech
) -> None:
    assert fuzz.server_works(channel, speech.pcm, speech.rate, require_text=False) == []
    assert server.server is not None
    assert wait_until(lambda: server.active_streams() == 0 and server.server.admission.active == 0)


def _streaming_config_case(language_codes: list[str]) -> Any:
    config = fuzz.asr_pb2.StreamingRecognitionConfig(
        config=fuzz.asr_pb2.RecognitionConfig(sample_rate_hertz=16000, language_codes=language_codes)
    )
    return fuzz.Case("stream", (fuzz.ConfigPart(config),))


@settings(max_examples=10, derandomize=True, database=None, deadline=None, phases=[Phase.generate])
@given(
    codes=st.lists(
        st.builds(lambda char, n: char * n, st.sampled_from(["€", "\U0001f600"]), st.integers(64, 300)),
        min_size=5,
        max_size=12,
    )
)
def test_error_message_naming_unknown_multibyte_language_codes_is_at_most_1_kb(
    channel: grpc.Channel, served: Any, codes: list[str]
) -> None:
    broken, described = _call(channel, served, _streaming_config_case(codes), b"")
    assert not broken, f"{broken}: {described}"
