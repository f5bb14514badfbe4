"""TLS, mutual TLS and bearer tokens end to end: server, client library, ``asr`` CLI, settings.

The certificates are made at test time with the openssl CLI: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate from the same CA and one from a CA the server does
not trust.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from asr_client import AsrClient, AsyncAsrClient, asr_pb2, recognition_config
from asr_client.api.asr.v1 import asr_pb2_grpc
from asr_harness import (
    REPO_ROOT,
    ServerThread,
    config,
    finals,
    fixed_chunks,
    requests,
    requires_espeak,
    stream,
    synthesize,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server import metrics
from server.api.auth import MALFORMED_TOKEN, MISSING_TOKEN, REJECTED_TOKEN, TokenCheck, load_tokens
from server.api.tls import load_server_tls
from server.settings import parse_settings

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI makes the test certificates")

TOKEN = "s3cret-token-0123456789"
OTHER_TOKEN = "another-token-abcdef"
WRONG_TOKEN = "guessed-token-that-is-wrong"
SERVING = health_pb2.HealthCheckResponse.SERVING


# -- certificates ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA nobody here trusts
    stranger_cert: Path  # a client certificate from it
    stranger_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _new_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return cert, key


def _issue(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    """A certificate and key for ``name``, signed by ``ca`` (cert, key), with these X.509v3 extensions."""
    cert, key, request, ext = (directory / f"{name}.{suffix}" for suffix in ("pem", "key", "csr", "ext"))
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", request, "-subj", f"/CN={name}",
    )  # fmt: skip
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _new_ca(directory, "test-ca")
    server = _issue(
        directory,
        "server",
        ca,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    client_extensions = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    client = _issue(directory, "client", ca, client_extensions)
    other_ca = _new_ca(directory, "other-ca")
    stranger = _issue(directory, "stranger", other_ca, client_extensions)
    return Pki(ca[0], *server, *client, other_ca[0], *stranger)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# accepted bearer tokens\n\n{TOKEN}\n  {OTHER_TOKEN}  \n")
    return path


# -- servers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(random_model_dir: Path, pki: Pki, token_file: Path) -> Iterator[ServerThread]:
    """TLS, bearer tokens, and the plaintext health port of the probes."""
    options = {
        "tls": load_server_tls(pki.server_cert, pki.server_key),
        "tokens": load_tokens(token_file),
        "health_port": 0,
    }
    with ServerThread([random_model_dir], server_options=options) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_server(random_model_dir: Path, pki: Pki) -> Iterator[ServerThread]:
    options = {"tls": load_server_tls(pki.server_cert, pki.server_key, client_ca_file=pki.ca)}
    with ServerThread([random_model_dir], server_options=options) as running:
        yield running


def _tls_channel(server: ServerThread, pki: Pki, **keys: bytes) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes(), **keys)
    return grpc.secure_channel(server.target, credentials)


def _unauthenticated_total(method: str) -> float:
    """asr_errors_total{code="UNAUTHENTICATED", method=...}, summed over any other labels."""
    return sum(
        sample.value
        for family in metrics.ERRORS.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
        and sample.labels.get("code") == "UNAUTHENTICATED"
        and sample.labels.get("method") == method
    )


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    return synthesize("please call me back tomorrow morning")


# -- TLS ---------------------------------------------------------------------------------------------
@requires_espeak
def test_tls_stream_with_a_token_transcribes(tls_server: ServerThread, pki: Pki, speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    with AsrClient(tls_server.target, ca_file=pki.ca, token=TOKEN) as client:
        responses = list(client.streaming_recognize(fixed_chunks(pcm, 3200), recognition_config(rate), timeout=60))
    assert [r for response in responses for r in response.results if r.is_final], "no final result"
    assert responses[-1].audio_processed.ToMilliseconds() > 1000


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server: ServerThread) -> None:
    with AsrClient(tls_server.target, token=TOKEN) as client, pytest.raises(grpc.RpcError) as failed:
        client.list_models(timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_server_certificate_fails(tls_server: ServerThread, pki: Pki) -> None:
    client = AsrClient(tls_server.target, ca_file=pki.other_ca, token=TOKEN)
    with client, pytest.raises(grpc.RpcError) as failed:
        client.list_models(timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


@requires_espeak
def test_the_async_client_speaks_tls_with_a_token(
    tls_server: ServerThread, pki: Pki, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech

    async def run() -> tuple[list[asr_pb2.ModelInfo], list[asr_pb2.StreamingRecognizeResponse]]:
        async with AsyncAsrClient(tls_server.target, tls=True, ca_file=str(pki.ca), token=TOKEN) as client:
            models = await client.list_models(timeout=10)
            chunks = fixed_chunks(pcm, 3200)
            responses = [r async for r in client.streaming_recognize(chunks, recognition_config(rate), timeout=60)]
            return models, responses

    models, responses = asyncio.run(run())
    assert [m.name for m in models] == [tls_server.registry.default]
    assert responses and responses[-1].results and responses[-1].results[-1].is_final


# -- mutual TLS --------------------------------------------------------------------------------------
def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(mtls_server: ServerThread, pki: Pki) -> None:
    with AsrClient(mtls_server.target, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key) as client:
        assert [m.name for m in client.list_models(timeout=10)] == [mtls_server.registry.default]
    for keys in ({}, {"cert_file": pki.stranger_cert, "key_file": pki.stranger_key}):
        with AsrClient(mtls_server.target, ca_file=pki.ca, **keys) as client, pytest.raises(grpc.RpcError) as failed:
            client.list_models(timeout=5)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, keys


def test_client_certificate_and_key_go_together(pki: Pki) -> None:
    with pytest.raises(ValueError, match="cert_file and key_file"):
        AsrClient("127.0.0.1:1", cert_file=pki.client_cert)
    with pytest.raises(ValueError, match="ready channel"):
        AsrClient(channel=grpc.insecure_channel("127.0.0.1:1"), token=TOKEN)


# -- tokens ------------------------------------------------------------------------------------------
def _call_with(stub: asr_pb2_grpc.RecognizerStub, metadata: tuple[tuple[str, str], ...]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failed:
        stub.ListModels(asr_pb2.ListModelsRequest(), metadata=metadata, timeout=10)
    return failed.value


def test_calls_without_an_accepted_token_are_unauthenticated_and_the_server_keeps_serving(
    tls_server: ServerThread, pki: Pki
) -> None:
    before = _unauthenticated_total("ListModels")
    with _tls_channel(tls_server, pki) as channel:
        stub = asr_pb2_grpc.RecognizerStub(channel)
        refusals = {
            "none": _call_with(stub, ()),
            "wrong": _call_with(stub, (("authorization", f"Bearer {WRONG_TOKEN}"),)),
            "scheme": _call_with(stub, (("authorization", f"Basic {TOKEN}"),)),
            "prefix": _call_with(stub, (("authorization", f"Bearer {TOKEN[:-1]}"),)),
        }
        accepted = stub.ListModels(asr_pb2.ListModelsRequest(), metadata=(("authorization", f"bearer {TOKEN}"),))
    assert {name: error.code() for name, error in refusals.items()} == dict.fromkeys(
        refusals, grpc.StatusCode.UNAUTHENTICATED
    )
    assert refusals["none"].details() == MISSING_TOKEN and refusals["scheme"].details() == MALFORMED_TOKEN
    assert refusals["wrong"].details() == REJECTED_TOKEN
    assert all(TOKEN[:8] not in e.details() and WRONG_TOKEN not in e.details() for e in refusals.values())
    assert [m.name for m in accepted.models] == [tls_server.registry.default]
    assert _unauthenticated_total("ListModels") - before == len(refusals)


@requires_espeak
def test_streams_and_recognize_need_the_token_too(
    tls_server: ServerThread, pki: Pki, speech: tuple[bytes, int]
) -> None:
    pcm, rate = speech
    with _tls_channel(tls_server, pki) as channel:
        stub = asr_pb2_grpc.RecognizerStub(channel)
        with pytest.raises(grpc.RpcError) as streamed:
            stream(stub, config(rate), fixed_chunks(pcm, 3200))
        request = asr_pb2.RecognizeRequest(config=recognition_config(rate), audio_content=pcm)
        with pytest.raises(grpc.RpcError) as recognized:
            stub.Recognize(request, metadata=(("authorization", f"Bearer {WRONG_TOKEN}"),), timeout=30)
        assert streamed.value.code() == recognized.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Right after, with the second token of the file: served as usual, no stream left behind.
        call = stub.StreamingRecognize(
            requests(config(rate), fixed_chunks(pcm, 3200)),
            metadata=(("authorization", f"Bearer {OTHER_TOKEN}"),),
            timeout=60,
        )
        assert finals(list(call))
    assert tls_server.active_streams() == 0


def test_health_and_reflection_need_no_token(tls_server: ServerThread, pki: Pki) -> None:
    request = health_pb2.HealthCheckRequest(service="asr.v1.Recognizer")
    with _tls_channel(tls_server, pki) as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status == SERVING
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([listing]), timeout=10)
        assert "asr.v1.Recognizer" in {s.name for s in answer.list_services_response.service}
    # The probes' plaintext port: health only.
    assert tls_server.server is not None and tls_server.server.health_port
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.server.health_port}") as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status == SERVING
        with pytest.raises(grpc.RpcError) as recognizer:
            asr_pb2_grpc.RecognizerStub(channel).ListModels(asr_pb2.ListModelsRequest(), timeout=10)
        assert recognizer.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_token_check_compares_whole_tokens() -> None:
    check = TokenCheck([TOKEN, OTHER_TOKEN])
    assert check.problem([("authorization", f"Bearer {OTHER_TOKEN}")]) is None
    assert check.problem([("authorization", f"  BEARER   {TOKEN} ")]) is None
    assert check.problem([("authorization", f"Bearer {TOKEN}x")]) == REJECTED_TOKEN
    assert check.problem([("authorization", "Bearer")]) == MALFORMED_TOKEN
    two = [("authorization", f"Bearer {TOKEN}"), ("authorization", f"Bearer {OTHER_TOKEN}")]
    assert check.problem(two) == MALFORMED_TOKEN
    assert check.problem([("x-api-key", TOKEN)]) == MISSING_TOKEN


# -- CLI -----------------------------------------------------------------------------------------------
def _asr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asr_client.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@requires_espeak
def test_cli_transcribes_over_tls_with_a_token(
    tls_server: ServerThread, pki: Pki, speech: tuple[bytes, int], tmp_path: Path
) -> None:
    pcm, rate = speech
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.frombuffer(pcm, "<i2"), rate, subtype="PCM_16")
    common = ("--server", tls_server.target, "--tls", "--ca-file", str(pki.ca))
    result = _asr("transcribe", str(wav), *common, "--token", TOKEN, "--json")
    assert result.returncode == 0, result.stderr
    *responses, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(res.get("is_final") for r in responses for res in r.get("results", [])), "no final result"
    assert summary["file"] == str(wav) and abs(summary["audio_seconds"] - len(pcm) / 2 / rate) < 0.3
    # The token from the environment; and without one, the server's message and exit status 1.
    assert _asr("models", *common, env={"ASR_TOKEN": TOKEN}).returncode == 0
    refused = _asr("models", *common, env={"ASR_TOKEN": ""})
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr and "Bearer <token>" in refused.stderr
    missing = _asr("models", "--server", tls_server.target, "--ca-file", str(tmp_path / "no-ca.pem"))
    assert missing.returncode == 1 and missing.stderr.startswith("asr: ") and "no-ca.pem" in missing.stderr


# -- settings and startup ------------------------------------------------------------------------------
def test_tls_settings_are_checked(pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = parse_settings(["--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key)])
    assert settings.tls_cert_file == pki.server_cert and settings.tls_client_ca_file is None
    for argv, expected in [
        (["--tls-cert-file", str(pki.server_cert)], "--tls-cert-file and --tls-key-file go together"),
        (["--tls-client-ca-file", str(pki.ca)], "--tls-client-ca-file needs --tls-cert-file"),
        (["--auth-token-file", str(tmp_path / "nope")], "--auth-token-file / ASR_AUTH_TOKEN_FILE: no such file"),
        (["--tls-cert-file", str(tmp_path), "--tls-key-file", str(pki.server_key)], "not a file"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            parse_settings(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("asr-server: ") and expected in err, err


def test_unusable_pem_files_are_refused_with_a_reason(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KEY_VALUES_MISMATCH"):
        load_server_tls(pki.server_cert, pki.client_key)
    with pytest.raises(ValueError, match="--tls-cert-file"):
        load_server_tls(pki.server_key, pki.server_key)
    with pytest.raises(ValueError, match="--tls-client-ca-file"):
        load_server_tls(pki.server_cert, pki.server_key, client_ca_file=pki.client_key)
    assert load_server_tls(pki.server_cert, pki.server_key, client_ca_file=pki.ca).mutual


def test_token_files(tmp_path: Path, token_file: Path) -> None:
    assert load_tokens(token_file) == {TOKEN, OTHER_TOKEN}
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="holds no token"):
        load_tokens(empty)
    spaced = tmp_path / "spaced"
    spaced.write_text(f"{TOKEN}\nsecret with spaces\n")
    with pytest.raises(ValueError, match="line 2") as error:
        load_tokens(spaced)
    assert "secret" not in str(error.value).replace(str(spaced), "")


def test_asr_server_serves_tls_and_tokens_from_its_flags(random_model_dir: Path, pki: Pki, token_file: Path) -> None:
    """The ``asr-server`` process: flags to a TLS port with tokens and a plaintext health port;
    unusable credentials end it at once with one line, before the model loads."""
    flags = ["--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key)]
    mismatched = ["--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.client_key)]
    bad = _server_process(random_model_dir, mismatched)
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 1 and "KEY_VALUES_MISMATCH" in err and "Traceback" not in err
    process = _server_process(random_model_dir, [*flags, "--auth-token-file", str(token_file), "--health-port", "0"])
    try:
        log = _read_until(process, r"health checks \(plaintext\) on [\d.]+:(\d+)")
        port = int(re.search(r"gRPC listening on [\d.]+:(\d+) \(TLS, 2 bearer token", log)[1])  # type: ignore[index]
        health_port = int(re.search(r"health checks \(plaintext\) on [\d.]+:(\d+)", log)[1])  # type: ignore[index]
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            _wait_serving(health_pb2_grpc.HealthStub(channel))
        with AsrClient(f"127.0.0.1:{port}", ca_file=pki.ca, token=OTHER_TOKEN) as client:
            assert client.list_models(timeout=10)
        with AsrClient(f"127.0.0.1:{port}", ca_file=pki.ca) as client, pytest.raises(grpc.RpcError) as refused:
            client.list_models(timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        process.kill()
        process.wait(10)


def _server_process(model_dir: Path, flags: list[str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "server.main", "--model-dir", str(model_dir), "--host", "127.0.0.1"]
    command += ["--port", "0", "--metrics-port", "-1", "--threads", "1", "--workers", "1", *flags]
    return subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)


def _read_until(process: subprocess.Popen[str], pattern: str) -> str:
    """The process's log up to the first line matching ``pattern``."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if re.search(pattern, line):
            # Keep reading, so that a full pipe never blocks the server's logging.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return "".join(lines)
    raise AssertionError("server exited before logging that:\n" + "".join(lines))


def _wait_serving(stub: health_pb2_grpc.HealthStub, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError("never SERVING")
