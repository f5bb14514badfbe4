"""Bearer tokens: every call needs ``authorization: Bearer <token>`` metadata, except open services.

The tokens come from a file (one per line; blank lines and ``#`` comments are ignored). A call
without an accepted token ends as UNAUTHENTICATED before its handler runs and before its request
is parsed, so an unauthenticated client costs the server no decoding, no audio and no stream
slot. Health checking and reflection stay open: probes and load balancers carry no token.

Tokens are compared as SHA-256 digests with ``hmac.compare_digest``, against every accepted
token each time, so that neither the time taken nor an early exit says how much of a guess
matched. Error messages never repeat what the client sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import grpc

from server import metrics
from server.api.errors import count_error

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"  # gRPC metadata keys are lower case
_SCHEME = "bearer"  # compared case-insensitively, as HTTP does (RFC 7235)

MISSING_TOKEN = "this server requires a token: send metadata 'authorization: Bearer <token>'"
MALFORMED_TOKEN = "malformed authorization metadata: send exactly one 'authorization: Bearer <token>'"
REJECTED_TOKEN = "the bearer token is not accepted: check the token your operator gave you"


def load_tokens(path: Path) -> frozenset[str]:
    """The accepted tokens of a token file; ``ValueError`` (naming lines, never tokens) if unusable."""
    tokens: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _is_token(line):
            raise ValueError(
                f"--auth-token-file {path}, line {number}: a token must be printable ASCII without spaces "
                "(it travels as gRPC metadata)"
            )
        tokens.add(line)
    if not tokens:
        # Starting anyway would refuse every client; saying so at startup is kinder.
        raise ValueError(f"--auth-token-file {path} holds no token (blank lines and # comments only)")
    return frozenset(tokens)


def _is_token(text: str) -> bool:
    return bool(text) and all("!" <= char <= "~" for char in text)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class TokenCheck:
    """Says whether a call's metadata carries an accepted bearer token, and if not, why."""

    def __init__(self, tokens: Collection[str]) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        self._digests = tuple(_digest(token) for token in tokens)

    def problem(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """None when ``metadata`` holds one accepted token; otherwise the message for the client."""
        values = [value for key, value in metadata or () if key == AUTHORIZATION]
        if not values:
            return MISSING_TOKEN
        if len(values) > 1 or not isinstance(values[0], str):
            return MALFORMED_TOKEN
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != _SCHEME or not token:
            return MALFORMED_TOKEN
        presented = _digest(token)
        # No short cut: every accepted token is compared, whichever one matches.
        matches = [hmac.compare_digest(presented, accepted) for accepted in self._digests]
        return None if any(matches) else REJECTED_TOKEN


def _rejecting_handler(handler: grpc.RpcMethodHandler, method: str, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` (of ``method``, a served method's short name) that
    ends the call as UNAUTHENTICATED.

    Its request deserializer ignores the bytes: nothing an unauthenticated client sends is parsed.
    """

    async def reject(context: grpc.aio.ServicerContext) -> None:
        # No model: the request that would name one is never read.
        count_error(grpc.StatusCode.UNAUTHENTICATED, model=metrics.NO_MODEL, method=method)
        log.info("%s from %s: %s", grpc.StatusCode.UNAUTHENTICATED.name, context.peer(), message)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await reject(context)

    async def stream_response(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await reject(context)
        yield  # unreachable: makes this an async generator, as stream handlers are

    def ignore(data: bytes) -> None:
        return None

    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_response, ignore, serializer)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream_response, ignore, serializer)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_response, ignore, serializer)
    return grpc.stream_stream_rpc_method_handler(stream_response, ignore, serializer)


class BearerTokenAuth(grpc.aio.ServerInterceptor):
    """Requires an accepted bearer token on every method outside ``open_services`` (full names)."""

    def __init__(self, tokens: Collection[str], open_services: Collection[str]) -> None:
        self._check = TokenCheck(tokens)
        self._open_prefixes = tuple(f"/{service}/" for service in open_services)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]  # grpc's stubs omit it
        if handler is None or method.startswith(self._open_prefixes):
            return handler
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        problem = self._check.problem(metadata)
        if problem is None:
            return handler
        # A served method (its handler exists), so the label stays bounded.
        return _rejecting_handler(handler, method.rsplit("/", 1)[-1], problem)
