"""Kubernetes manifests (issue 4), checked offline: no cluster in CI.

- ``kubectl kustomize`` renders the base and every overlay, and every rendered object validates
  (strictly: unknown fields are errors) against the Kubernetes JSON schemas bundled in the
  ``kubernetes-validate`` package, for the oldest supported Kubernetes (1.30: preStop ``sleep``)
  and the newest bundled one. CRDs without a bundled schema (ServiceMonitor) get their own asserts.
- The rendered manifests are read for what matters at run time: probes on the gRPC port, a GPU
  in the GPU overlay, grace period >= preStop + drain timeout, the HPA on the Deployment with a
  metric the Prometheus Adapter rule serves, selectors that match the pods, Service ports that
  match container ports and the ConfigMap's ASR_* settings.
- The optional components (TLS, mutual TLS, bearer tokens) render with every overlay: their
  files come from Secret mounts, and with TLS the probes move to the plaintext health port.

The tests skip only when kubectl is missing.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import (
    DEFAULT_DRAIN_TIMEOUT_S,
    GRPC_PORT,
    HEALTH_SERVICE,
    HPA_METRIC,
    K8S,
    METRICS_PORT,
    dockerfile_args,
    load_yaml,
    parse_duration,
    parse_settings,
    server_settings,
)

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: cannot render kustomize")

# Kubernetes versions to validate against: the oldest we support (native gRPC probes are GA
# since 1.27, the preStop sleep action is on by default since 1.30) and the newest bundled.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Custom resources: no bundled schema; checked by test_service_monitor instead.
CRD_KINDS = {"ServiceMonitor"}

KUSTOMIZATIONS = ["base"] + sorted(
    f"overlays/{path.parent.name}" for path in (K8S / "overlays").glob("*/kustomization.yaml")
)
OVERLAYS = [k for k in KUSTOMIZATIONS if k.startswith("overlays/")]
# Optional components an overlay lists to turn them on (mtls needs tls before it).
COMPONENT_SETS = [("tls",), ("tls", "mtls"), ("tokens",), ("tls", "mtls", "tokens")]
# The settings that name files, and the Secret each file comes from.
SECRET_FILE_SETTINGS = {
    "ASR_TLS_CERT_FILE": "asr-server-tls",
    "ASR_TLS_KEY_FILE": "asr-server-tls",
    "ASR_TLS_CLIENT_CA_FILE": "asr-server-tls",
    "ASR_AUTH_TOKEN_FILE": "asr-server-tokens",
}


# --------------------------------------------------------------------------- helpers


@functools.cache
def render(kustomization: str) -> tuple[dict, ...]:
    """Objects rendered by ``kubectl kustomize`` for deploy/k8s/<kustomization>."""
    return render_directory(K8S / kustomization)


def render_directory(directory: Path) -> tuple[dict, ...]:
    proc = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render_with_components(overlay: str, components: tuple[str, ...], directory: Path) -> tuple[dict, ...]:
    """An overlay with deploy/k8s/components/<name> added, as its commented ``components:`` list
    does when uncommented (kustomize takes only relative paths)."""

    def relative(path: Path) -> str:
        return os.path.relpath(path, directory)

    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [relative(K8S / overlay)],
        "components": [relative(K8S / "components" / name) for name in components],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render_directory(directory)


def schema_problems(objects) -> tuple[list[str], set[str]]:
    """(validation errors, kinds without a bundled schema) of rendered objects, strictly, for every
    Kubernetes version of K8S_VERSIONS."""
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
    return errors, skipped


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


# --------------------------------------------------------------------------- tests


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
    errors, skipped = schema_problems(objects)
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
    # engine processes and torch threads follow the CPU request rather than the node's core count
    requests = server_container(objects)["resources"]["requests"]
    assert int(data["ASR_THREADS"]) <= int(requests["cpu"])
    assert 1 <= int(data["ASR_WORKERS"]) <= int(requests["cpu"])
    # Service env variables (ASR_SERVER_PORT=tcp://...) must not mix with the ASR_ settings
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"] is False


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


@needs_kubectl
@pytest.mark.parametrize("components", COMPONENT_SETS, ids="+".join)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tls_and_token_components_mount_secrets_and_keep_the_probes_working(overlay, components, tmp_path):
    objects = render_with_components(overlay, components, tmp_path)
    errors, skipped = schema_problems(objects)
    assert not errors, "\n".join(errors)
    assert skipped <= CRD_KINDS
    data = config_map(objects)
    assert {k for k in data if k.startswith("ASR_")} <= server_settings().keys()
    assert "ASR_TLS_CLIENT_CA_FILE" not in data or "ASR_TLS_CERT_FILE" in data, "mutual TLS is TLS"
    # Every file the settings name is in a read-only mount of the Secret it belongs to.
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = server_container(objects)
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    named = {key: PurePosixPath(data[key]) for key in SECRET_FILE_SETTINGS if key in data}
    assert named, "the components set no file"
    for key, path in named.items():
        mount = mounts.get(str(path.parent))
        assert mount is not None and mount.get("readOnly"), f"{key}={path}: no read-only mount of {path.parent}"
        assert secrets.get(mount["name"]) == SECRET_FILE_SETTINGS[key], f"{key}: not from {SECRET_FILE_SETTINGS[key]}"
    # Kubernetes' gRPC probes speak plaintext: with TLS they go to the health port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(data.get("ASR_PORT", GRPC_PORT))
    probe_port = int(data["ASR_HEALTH_PORT"]) if "ASR_TLS_CERT_FILE" in data else ports["grpc"]
    if "ASR_TLS_CERT_FILE" in data:
        assert ports["health"] == probe_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == probe_port, probe
    assert container["readinessProbe"]["grpc"].get("service") == HEALTH_SERVICE
