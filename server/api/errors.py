"""Request errors and their gRPC status codes."""

from __future__ import annotations

import grpc

from server import metrics


class RequestError(Exception):
    """An error to return to the client with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def count_error(code: grpc.StatusCode) -> None:
    """Count a request that ended with ``code`` in ``asr_errors_total``."""
    metrics.ERRORS.labels(code=code.name).inc()
