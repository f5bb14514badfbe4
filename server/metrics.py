"""Prometheus metrics of the server, served over HTTP on ``--metrics-port``.

The metric objects live in the process-wide default registry (created once at import), so
several servers in one process (tests) share them rather than failing to re-register.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

ACTIVE_STREAMS = Gauge("asr_active_streams", "Recognition streams in progress.", ["model"])
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
    "Duration of one batched model step (encoder chunk plus greedy decoding).",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AUDIO_SECONDS = Counter("asr_audio_seconds_total", "Seconds of audio recognised.", ["model"])
REAL_TIME_FACTOR = Gauge(
    "asr_real_time_factor",
    "Model step time per second of audio, smoothed over recent steps (below 1 is faster than real time).",
    ["model"],
)
PARTIAL_LATENCY = Histogram(
    "asr_partial_latency_seconds",
    "Time from receiving the audio that completed a model step to sending the result it produced.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ERRORS = Counter("asr_errors_total", "Requests ended with an error, by gRPC status code.", ["code"])


class RtfTracker:
    """Exponentially smoothed real-time factor of one model, published to the gauge."""

    def __init__(self, model: str, smoothing: float = 0.1) -> None:
        self._gauge = REAL_TIME_FACTOR.labels(model=model)
        self._smoothing = smoothing
        self._value: float | None = None

    def observe(self, step_seconds: float, audio_seconds: float) -> None:
        if audio_seconds <= 0:
            return
        rtf = step_seconds / audio_seconds
        self._value = rtf if self._value is None else self._value + self._smoothing * (rtf - self._value)
        self._gauge.set(self._value)


def serve_metrics(host: str, port: int) -> int | None:
    """Start the /metrics HTTP server in a daemon thread; returns its port (None when disabled)."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
