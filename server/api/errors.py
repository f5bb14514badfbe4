"""Request errors and their gRPC status codes, and bounds on what an error message repeats."""

from __future__ import annotations

import grpc

from server import metrics


class RequestError(Exception):
    """An error to return to the client with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# gRPC sends the status message as metadata (16 KB hard limit per call): a message that echoes
# a client's 20 KB string would reach the client as RESOURCE_EXHAUSTED instead of its own code.
MAX_ECHO_CHARS = 64
MAX_MESSAGE_BYTES = 1000


def shown(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with its full length said."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def bounded(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to ``limit`` bytes of UTF-8 (what goes on the wire): the last guard before a
    status goes out."""
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    return encoded[: limit - 3].decode(errors="ignore") + "..."


def invalid_argument(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def count_error(code: grpc.StatusCode, *, model: str = metrics.NO_MODEL, method: str = metrics.UNKNOWN_METHOD) -> None:
    """Count a request of ``method`` on ``model`` that ended with ``code``.

    ``model`` is a served model's name, ``metrics.NO_MODEL`` or ``metrics.UNKNOWN_MODEL``, never
    the name a client sent. ``CANCELLED`` goes to ``asr_cancellations_total`` instead: the client
    chose to end the call (or its connection broke), which says nothing about the server's
    health, and an error-rate alert must not fire on it.
    """
    if code == grpc.StatusCode.CANCELLED:
        metrics.CANCELLATIONS.labels(model=model, method=method).inc()
    else:
        metrics.ERRORS.labels(code=code.name, model=model, method=method).inc()
