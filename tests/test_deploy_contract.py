"""The server's contract the packaging relies on (issue 4): ASR_* settings and their defaults,
ports, metric names and types, checked against the server's own Settings and metrics registry."""

from __future__ import annotations

from deploy_helpers import (
    DEFAULT_DRAIN_TIMEOUT_S,
    GRPC_PORT,
    HPA_METRIC,
    METRICS,
    METRICS_PORT,
    SETTINGS,
    server_metric_types,
    server_settings,
)


def test_server_contract():
    """The settings, defaults and metrics the packaging relies on exist in the server."""
    settings = server_settings()
    assert settings.keys() >= SETTINGS, f"the server has no setting {SETTINGS - settings.keys()}"
    assert settings["ASR_PORT"] == GRPC_PORT and settings["ASR_METRICS_PORT"] == METRICS_PORT
    assert settings["ASR_DRAIN_TIMEOUT_S"] == DEFAULT_DRAIN_TIMEOUT_S
    types = server_metric_types()
    assert types.keys() >= METRICS, f"the server does not export {METRICS - types.keys()}"
    assert types[HPA_METRIC] == "gauge", "the HPA averages a per-pod gauge"
