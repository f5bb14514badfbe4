"""Request messages that do not parse end as INVALID_ARGUMENT, on every method of a service.

grpc.aio parses a request before the servicer sees it. Left alone, a unary request that does not
parse ends as UNKNOWN (and grpc logs a traceback), and a stream's message that does not parse
raises ``DecodeError`` from the request iterator, which a servicer would have to tell apart from a
broken connection. This interceptor wraps the service's handlers so that both become a
``RequestError`` (INVALID_ARGUMENT) that names the message type: a client mistake, logged at INFO.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from server import metrics
from server.api.errors import RequestError, count_error, invalid_argument


@dataclass(frozen=True)
class _Unparsed:
    """Stands in for a unary request that did not parse, so the guard can reject it."""

    error: RequestError


def _parse_error(deserializer: Callable[[bytes], Any]) -> RequestError:
    type_name = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = type_name.full_name if type_name is not None else "the request type"
    # DecodeError's own text repeats the type name and adds nothing a client can act on.
    return invalid_argument(
        f"a request message does not parse as {name} (malformed protobuf): send messages built from asr.v1"
    )


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _Unparsed(_parse_error(deserializer))

    return parse


def _guard_unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
    method: str,
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Unparsed):
            # No model yet: the request that would name it did not parse.
            count_error(request.error.code, model=metrics.NO_MODEL, method=method)
            await context.abort(request.error.code, request.error.message)
        return await behavior(request, context)

    return guarded


def _guard_stream(
    behavior: Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]],
    deserializer: Callable[[bytes], Any],
) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def parsed(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for request in requests:
                yield request
        except DecodeError:
            raise _parse_error(deserializer) from None

    async def guarded(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for response in behavior(parsed(requests), context):
            yield response

    return guarded


class MalformedRequestGuard(grpc.aio.ServerInterceptor):
    """Applies to the methods of ``service`` (a full service name); other services pass through."""

    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]  # grpc's stubs omit it
        if handler is None or not method.startswith(self._prefix):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary, method.removeprefix(self._prefix)),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _guard_stream(handler.stream_stream, handler.request_deserializer),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
