"""TLS channel credentials and bearer tokens of the clients.

The token goes out as ``authorization: Bearer <token>`` metadata, added to every call by a
channel interceptor: it works over TLS and over plaintext (a server behind a proxy or mesh that
terminates TLS), which gRPC's own call credentials refuse, and calls made through ``client.stub``
carry it too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import grpc.aio

AUTHORIZATION = "authorization"


def channel_credentials(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials: the server is verified against ``ca_file`` (None: the system roots);
    ``cert_file`` and ``key_file`` (PEM, both or neither) are the client's for mutual TLS."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together: give both (mutual TLS) or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file),
        private_key=_read(key_file),
        certificate_chain=_read(cert_file),
    )


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def bearer_metadata(token: str) -> tuple[str, str]:
    """The metadata entry that carries ``token``; ``ValueError`` (not repeating it) if it cannot."""
    token = token.strip()
    if not token or not all("!" <= char <= "~" for char in token):
        raise ValueError("a bearer token must be non-empty printable ASCII without spaces")
    return (AUTHORIZATION, f"Bearer {token}")


def _with_entry(metadata: Any, entry: tuple[str, str]) -> tuple[tuple[str, Any], ...]:
    """The call's metadata without any authorization of its own, plus ``entry``."""
    kept = tuple((key, value) for key, value in (metadata or ()) if key != AUTHORIZATION)
    return (*kept, entry)


class _CallFields(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _CallDetails(_CallFields, grpc.ClientCallDetails):
    """Concrete call details for the blocking interceptor (grpc's class is abstract)."""


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Blocking channels (``grpc.intercept_channel``): adds the token to every call."""

    def __init__(self, token: str) -> None:
        self._entry = bearer_metadata(token)

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,  # type: ignore[attr-defined]  # grpc's stubs declare no attributes here
            details.timeout,  # type: ignore[attr-defined]
            _with_entry(details.metadata, self._entry),  # type: ignore[attr-defined]
            details.credentials,  # type: ignore[attr-defined]
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _AsyncBearerToken:
    """What the asyncio interceptors share: the entry to add."""

    def __init__(self, token: str) -> None:
        self._entry = bearer_metadata(token)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata.from_tuple(_with_entry(details.metadata, self._entry))
        return details._replace(metadata=metadata)


# grpc.aio files an interceptor under the first call kind it implements only: one class per kind.
class _AsyncUnaryUnary(_AsyncBearerToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AsyncUnaryStream(_AsyncBearerToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AsyncStreamUnary(_AsyncBearerToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _AsyncStreamStream(_AsyncBearerToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def async_bearer_token(token: str) -> list[grpc.aio.ClientInterceptor]:
    """asyncio channels (``interceptors=``): add the token to every call, of every kind."""
    return [kind(token) for kind in (_AsyncUnaryUnary, _AsyncUnaryStream, _AsyncStreamUnary, _AsyncStreamStream)]
