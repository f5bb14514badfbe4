"""Shared helpers of the packaging tests (``test_deploy_*``): paths, the server's contract, parsers.

Not a test module. The names here are what the Dockerfile, compose files, Kubernetes manifests
and monitoring configs rely on; ``test_deploy_contract`` checks them against the server's code.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml"]

# The server's contract (issue "The gRPC streaming service"): settings, ports, health, metrics;
# test_server_contract checks it against the server's code.
SETTINGS = {
    "ASR_HOST",
    "ASR_PORT",
    "ASR_METRICS_PORT",
    "ASR_MODEL_DIR",
    "ASR_MODELS_DIR",
    "ASR_DEFAULT_MODEL",
    "ASR_DEVICE",
    "ASR_MAX_STREAMS",
    "ASR_MAX_BATCH_SIZE",
    "ASR_MAX_WAIT_MS",
    "ASR_DRAIN_TIMEOUT_S",
    "ASR_LOG_LEVEL",
    # engine processes and torch threads (docker-compose.yml, the Kubernetes ConfigMap)
    "ASR_WORKERS",
    "ASR_THREADS",
    # TLS and tokens (deploy/k8s/components, docker-compose.yml's commented example)
    "ASR_TLS_CERT_FILE",
    "ASR_TLS_KEY_FILE",
    "ASR_TLS_CLIENT_CA_FILE",
    "ASR_AUTH_TOKEN_FILE",
    "ASR_HEALTH_PORT",
}
GRPC_PORT = 50051
METRICS_PORT = 9400
DEFAULT_DRAIN_TIMEOUT_S = 30
HEALTH_SERVICE = "asr.v1.Recognizer"
METRICS = {
    "asr_active_streams",
    "asr_batch_size",
    "asr_queue_wait_seconds",
    "asr_step_seconds",
    "asr_audio_seconds_total",
    "asr_partial_latency_seconds",
    "asr_final_latency_seconds",
    "asr_errors_total",
    "asr_cancellations_total",
    "asr_streams_total",
    "asr_build_info",
}
# Recording rules (deploy/prometheus/rules) name their series level:metric:operations.
RECORDED_SERIES = re.compile(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b")
HPA_METRIC = "asr_active_streams"


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def compose() -> dict:
    return load_yaml(ROOT / "docker-compose.yml")


def parse_duration(text: str | int | float) -> float:
    """Compose durations: '40s', '1m30s', '500ms' (numbers are seconds)."""
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


@functools.cache
def server_settings() -> dict[str, object]:
    """ASR_* environment variable -> default, from the server's pydantic Settings."""
    from server.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name.upper()}": field.default for name, field in Settings.model_fields.items()}


@functools.cache
def server_metric_types() -> dict[str, str]:
    """Metric name -> type, as the server registers them (server/metrics.py)."""
    import prometheus_client

    import server.metrics  # noqa: F401  (registers the server's metrics in the default registry)

    types = {}
    for family in prometheus_client.REGISTRY.collect():
        if family.name.startswith("asr_"):
            types[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return types


def check_promql(expr: str) -> list[str]:
    """Problems of the asr_* series an expression reads, given the server's metric types.

    Recorded series (``RECORDED_SERIES``) are left out: they are not the server's, and the
    monitoring tests check them against the recording rules.
    """
    types = server_metric_types()
    problems = []
    for token in set(re.findall(r"\b(asr_[a-z_]+)\b", RECORDED_SERIES.sub(" ", expr))):
        base = re.sub(r"_(bucket|sum|count)$", "", token)
        if token in types and types[token] != "histogram":
            if types[token] == "gauge" and re.search(rf"\b(i?rate|increase)\(\s*{token}\b", expr):
                problems.append(f"rate() of the gauge {token}")
        elif base != token and types.get(base) == "histogram":
            pass
        else:
            problems.append(f"{token}: no such series (server metrics: {sorted(types)})")
    return problems


def parse_settings(env: dict[str, str], monkeypatch) -> object:
    """The server's Settings as it would read them from exactly this environment."""
    from server.settings import Settings

    for key in list(os.environ):
        if key.startswith("ASR_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, buffer = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buffer += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, rest = buffer.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            buffer = ""
    return instructions


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM first); global ARGs under ''."""
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args, flags=re.IGNORECASE)
            assert match and match[2], f"every stage should be named: FROM {args}"
            current = match[2]
            stages[current] = []
        stages[current].append((keyword, args))
    return stages


def dockerfile_args() -> dict[str, str]:
    """Default values of every ARG in the Dockerfile."""
    out = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            out[name] = value.strip('"')
    return out
