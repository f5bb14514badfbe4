"""docker-compose files and the Envoy in front of the replicas (issue 4), checked offline.

The compose files validate against the compose specification schema (vendored in the
``check-jsonschema`` package) and are checked for wiring (mounts, ports, drain time); Envoy's
config for long-lived gRPC streams balanced over the replicas.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from deploy_helpers import (
    COMPOSE_FILES,
    DEFAULT_DRAIN_TIMEOUT_S,
    DEPLOY,
    DOCKERFILE,
    HEALTH_SERVICE,
    ROOT,
    compose,
    load_yaml,
    parse_duration,
    parse_settings,
    server_settings,
)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates_against_the_compose_spec(path):
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_wiring():
    services = compose()["services"]
    assert {"asr", "envoy", "prometheus", "grafana"} <= services.keys()
    asr = services["asr"]
    env = {k: str(v) for k, v in asr["environment"].items()}
    assert {k for k in env if k.startswith("ASR_")} <= server_settings().keys()
    assert (ROOT / asr["build"]["context"] / asr["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert "VARIANT" in asr["build"]["args"]
    drain = float(env.get("ASR_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_TIMEOUT_S))
    assert parse_duration(asr["stop_grace_period"]) >= drain + 5, "docker would SIGKILL mid-drain"
    assert asr.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert "healthcheck.py" in " ".join(asr["healthcheck"]["test"])
    assert asr["deploy"]["replicas"] >= 2, "two replicas behind Envoy"
    assert "ASR_WORKERS" in env, "the default (the host's cores) would oversubscribe a host shared by replicas"
    assert not asr.get("ports"), "replicas are reached through Envoy, not published"
    assert {int(p) for p in asr["expose"]} == {int(env["ASR_PORT"]), int(env["ASR_METRICS_PORT"])}
    assert services["envoy"]["depends_on"]["asr"]["condition"] == "service_healthy"
    # every bind mount exists in the repository
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_environment_is_valid_server_settings(path, monkeypatch):
    environment = {**compose()["services"]["asr"]["environment"]}
    environment.update(load_yaml(path)["services"]["asr"].get("environment", {}))
    # ${VAR:-default} as docker compose resolves it with VAR unset
    env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in environment.items()}
    assert not any("$" in v for v in env.values()), env
    parse_settings({k: v for k, v in env.items() if k.startswith("ASR_")}, monkeypatch)


def test_compose_gpu_override():
    asr = load_yaml(ROOT / "docker-compose.gpu.yml")["services"]["asr"]
    assert asr["build"]["args"]["VARIANT"] == "gpu"
    assert asr["environment"]["ASR_DEVICE"] == "cuda"
    assert asr["image"].endswith("-gpu")
    devices = asr["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def _resolved(value: object) -> str:
    """``${VAR:-default}`` as docker compose resolves it with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def test_envoy_balances_grpc_streams():
    config = load_yaml(DEPLOY / "envoy" / "envoy.yaml")
    env = compose()["services"]["asr"]["environment"]
    listener = config["static_resources"]["listeners"][0]
    port = listener["address"]["socket_address"]["port_value"]
    assert f"{port}:{port}" in compose()["services"]["envoy"]["ports"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"
    for vhost in hcm["route_config"]["virtual_hosts"]:
        for route in vhost["routes"]:
            # the default 15 s route timeout would cut every long stream
            assert route["route"]["timeout"] == "0s"
            # streams refused by a draining replica are retried on another one
            assert "unavailable" in route["route"]["retry_policy"]["retry_on"].split(",")
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS" and cluster["lb_policy"] in {"LEAST_REQUEST", "ROUND_ROBIN"}
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"], "gRPC upstreams need HTTP/2"
    # several connections per busy replica, so that its worker processes share the streams
    upstream_streams = options["explicit_http_config"]["http2_protocol_options"]["max_concurrent_streams"]
    workers, max_streams = (int(_resolved(env[key])) for key in ("ASR_WORKERS", "ASR_MAX_STREAMS"))
    assert upstream_streams * workers <= max_streams
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("asr", int(env["ASR_PORT"]))
    (health,) = cluster["health_checks"]
    assert health["grpc_health_check"]["service_name"] == HEALTH_SERVICE
