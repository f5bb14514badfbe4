"""Prometheus metrics of the server, served over HTTP on ``--metrics-port``.

The metric objects live in the process-wide default registry (created once at import), so
several servers in one process (tests) share them rather than failing to re-register.

With ``--workers`` > 1 every worker process records into files under ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode, set up by server/workers.py before the workers start)
and the parent process serves their sum (``multiprocess_registry``): counters and histograms
add up; each gauge says how (``multiprocess_mode``, ignored in one process).

Label values are bounded: ``model`` is a served model's name (or ``NO_MODEL`` / ``UNKNOWN_MODEL``),
``method`` a method of the service, ``code`` a gRPC status code; never a string a client sent.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

# The `_created` series double every counter and histogram for a timestamp that `rate()`
# never needs; without them a scrape is about half the size.
prometheus_client.disable_created_metrics()

# The `model` label of an error before the request named a model (malformed message, no
# configuration first, authentication), and of one that named a model this server lacks.
NO_MODEL = ""
UNKNOWN_MODEL = "unknown"
UNKNOWN_METHOD = "unknown"

# Workers: the sum over the live worker processes (a dead worker's streams are gone).
ACTIVE_STREAMS = Gauge("asr_active_streams", "Recognition streams in progress.", ["model"], multiprocess_mode="livesum")
STREAMS_TOTAL = Counter("asr_streams_total", "Recognition streams accepted (streaming and unary).", ["model"])
BATCH_SIZE = Histogram(
    "asr_batch_size",
    "Streams per model step.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_WAIT = Histogram(
    "asr_queue_wait_seconds",
    "Time a ready feature window waits for its model step to start.",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STEP_SECONDS = Histogram(
    "asr_step_seconds",
    "Duration of one batched model step (encoder chunk plus search).",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AUDIO_SECONDS = Counter("asr_audio_seconds_total", "Seconds of audio recognised.", ["model"])
PARTIAL_LATENCY = Histogram(
    "asr_partial_latency_seconds",
    "Time from receiving the audio that completed a model step to sending the result it produced.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# Includes the endpointer's trailing silence (800 ms by default): the buckets centre on it.
FINAL_LATENCY = Histogram(
    "asr_final_latency_seconds",
    "Time from receiving the audio at a final result's end (the end of speech) to sending the final.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
ERRORS = Counter(
    "asr_errors_total",
    "Requests ended with an error, by gRPC status code, model and method (client cancellations excluded).",
    ["code", "model", "method"],
)
CANCELLATIONS = Counter(
    "asr_cancellations_total",
    "Requests the client cancelled (or whose connection broke) before they ended.",
    ["model", "method"],
)
BUILD_INFO = Gauge(
    "asr_build_info",
    "Always 1; the labels say which server build runs (its version, Python's and torch's).",
    ["version", "python", "torch"],
    # Workers: every process publishes the same 1; "max" keeps one series without a pid label.
    multiprocess_mode="max",
)


def _distribution_version(name: str) -> str:
    """The installed version of distribution ``name``; "unknown" when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _publish_build_info() -> None:
    # Read from package metadata, so that importing the metrics does not import torch.
    BUILD_INFO.labels(
        version=_distribution_version("streaming-asr"),
        python=platform.python_version(),
        torch=_distribution_version("torch"),
    ).set(1)


_publish_build_info()


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry of what the worker processes recorded under ``path`` (their
    ``PROMETHEUS_MULTIPROC_DIR``), summed over them; no ``_created`` series (the files hold none)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> int | None:
    """Start the /metrics HTTP server in a daemon thread; returns its port (None when disabled)."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
