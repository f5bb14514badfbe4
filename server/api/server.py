"""The gRPC server: Recognizer service, health checking, reflection, draining."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import grpc
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.api.admission import Admission, SharedStreamCount
from server.api.auth import BearerTokenAuth
from server.api.malformed import MalformedRequestGuard
from server.api.servicer import MAX_RECOGNIZE_MESSAGE_BYTES, RecognizerServicer
from server.api.tls import ServerTls
from server.engine.registry import ModelRegistry

log = logging.getLogger(__name__)

# After the drain timeout, how long the finalised streams get to send their finals (default).
FINALS_ON_DRAIN_TIMEOUT_S = 5.0

SERVICE_NAME = asr_pb2.DESCRIPTOR.services_by_name["Recognizer"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Open without a token: probes and load balancers carry none, and reflection only describes the API.
OPEN_SERVICES = (HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)


@dataclass(frozen=True)
class ConnectionPolicy:
    """How long silent clients and dead connections may hold the server's streams (0: no limit)."""

    idle_timeout_s: float = 30.0  # a stream whose client sends nothing this long ends (OUT_OF_RANGE)
    keepalive_time_s: float = 60.0  # ping a connection after this long without traffic...
    keepalive_timeout_s: float = 20.0  # ...and close it (cancelling its calls) if no answer comes
    max_connection_idle_s: float = 0.0  # close a connection with no call this long (GOAWAY)
    min_client_ping_interval_s: float = 10.0  # a client pinging more often is told off (GOAWAY)

    def grpc_options(self) -> list[tuple[str, int]]:
        """The grpc core channel arguments that apply this policy."""
        options = [
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout_s)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.min_client_ping_interval_s)),
        ]
        if self.max_connection_idle_s:
            options.append(("grpc.max_connection_idle_ms", _ms(self.max_connection_idle_s)))
        return options


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class AsrServer:
    """A grpc.aio server around a model registry.

    Health is NOT_SERVING until the models are warmed up, and again from the start of a
    drain, so load balancers and Kubernetes stop sending new streams first.

    ``tls``: the port is a TLS port (else plaintext). ``tokens``: every call but health and
    reflection needs one of them as a bearer token (empty: no tokens asked). ``health_port``:
    also serve the health service alone on this plaintext port, for probes that cannot speak TLS
    or present a client certificate (Kubernetes' gRPC probes); None: no such port.

    One of several worker processes behind one port (``--workers``, server/workers.py):
    ``reuse_port`` binds the ports with SO_REUSEPORT beside the other workers (otherwise a port
    in use is an error); ``shared_streams`` is the server-wide stream count that
    ``max_streams`` limits; ``before_serving`` runs once the models are warm and says whether
    to report SERVING (the workers wait there until all of them are ready; False: the server
    is shutting down before it served).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        host: str = "0.0.0.0",
        port: int = 50051,
        max_streams: int = 64,
        drain_timeout_s: float = 30.0,
        finals_timeout_s: float = FINALS_ON_DRAIN_TIMEOUT_S,
        warmup: bool = True,
        connections: ConnectionPolicy | None = None,
        tls: ServerTls | None = None,
        tokens: Collection[str] = (),
        health_port: int | None = None,
        reuse_port: bool = False,
        shared_streams: SharedStreamCount | None = None,
        before_serving: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.drain_timeout_s = drain_timeout_s
        self.finals_timeout_s = finals_timeout_s
        self.warmup = warmup
        self.connections = connections or ConnectionPolicy()
        self.tls = tls
        self.tokens = frozenset(tokens)
        self.requested_health_port = health_port
        self.health_port: int | None = None
        self.reuse_port = reuse_port
        self.before_serving = before_serving
        self.admission = Admission(max_streams, shared_streams)
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._health_update: asyncio.Task[None] | None = None  # kept referenced until done
        self._servicer: RecognizerServicer | None = None

    async def start(self) -> int:
        """Listen, warm up the models, then report SERVING; returns the bound port."""
        # Room for a Recognize request at its documented limit plus its configuration.
        max_message = MAX_RECOGNIZE_MESSAGE_BYTES + 64 * 1024
        server = grpc.aio.server(
            interceptors=self._interceptors(),
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.so_reuseport", int(self.reuse_port)),
                *self.connections.grpc_options(),
            ],
        )
        servicer = self._servicer = RecognizerServicer(self.registry, self.admission, self.connections.idle_timeout_s)
        asr_pb2_grpc.add_RecognizerServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME),
            server,
        )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = self._add_port(server)
        await server.start()
        self._server = server
        log.info("gRPC listening on %s:%d (%s); warming up", self.host, self.port, self._describe_security())
        if self.tokens and self.tls is None:
            log.warning("bearer tokens over plaintext: keep this port behind a proxy or mesh that adds TLS")
        if self.requested_health_port is not None:
            await self._start_health_server(self.requested_health_port)
        await self.registry.start(warmup=self.warmup)
        for engine in self.registry.engines.values():
            engine.stall_listeners.append(self._engine_stall_changed)
        if self.before_serving is not None and not await self.before_serving():
            return self.port
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving models %s (default %s)", sorted(self.registry.engines), self.registry.default)
        return self.port

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Token check first: an unauthenticated call is refused before anything else looks at it."""
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.tokens:
            interceptors.append(BearerTokenAuth(self.tokens, OPEN_SERVICES))
        interceptors.append(MalformedRequestGuard(SERVICE_NAME))
        return interceptors

    def _add_port(self, server: grpc.aio.Server) -> int:
        address = f"{self.host}:{self.requested_port}"
        if self.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, self.tls.credentials)
        if port == 0:
            raise RuntimeError(f"cannot listen on {address}")
        return port

    def _describe_security(self) -> str:
        transport = self.tls.describe() if self.tls is not None else "plaintext"
        return f"{transport}, {len(self.tokens)} bearer token(s)" if self.tokens else transport

    async def _start_health_server(self, port: int) -> None:
        """The health service alone on a plaintext port, sharing the main port's health statuses."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", int(self.reuse_port))])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.health_port = server.add_insecure_port(f"{self.host}:{port}")
        if self.health_port == 0:
            raise RuntimeError(f"cannot listen on {self.host}:{port} (--health-port)")
        await server.start()
        self._health_server = server
        log.info("health checks (plaintext) on %s:%d", self.host, self.health_port)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    def _engine_stall_changed(self, model: str, stalled: bool) -> None:
        """The watchdog's news: NOT_SERVING while any model's worker is stalled (unless draining,
        which is NOT_SERVING for good)."""
        if self.admission.draining:
            return
        any_stalled = any(engine.stalled for engine in self.registry.engines.values())
        status = health_pb2.HealthCheckResponse.NOT_SERVING if any_stalled else health_pb2.HealthCheckResponse.SERVING
        log.warning(
            "model %s %s; health %s",
            model,
            "stalled" if stalled else "recovered",
            "NOT_SERVING" if any_stalled else "SERVING",
        )
        self._health_update = asyncio.get_running_loop().create_task(self._set_health(status))

    async def drain(self) -> None:
        """Graceful shutdown: NOT_SERVING, refuse new streams, let running ones finish, stop."""
        if self.admission.draining:
            return
        self.admission.draining = True
        await self.health.enter_graceful_shutdown()
        log.info(
            "draining: %d stream(s) in progress, waiting up to %.0f s",
            self.admission.active,
            self.drain_timeout_s,
        )
        if not await self.admission.wait_idle(self.drain_timeout_s):
            # Finals on drain: what the open streams said so far is finalised and sent, as if
            # each client had half-closed; only a stream that cannot finish even then is cancelled.
            assert self._servicer is not None
            finishing = self._servicer.finish_open_streams()
            log.warning("drain timeout: finalising %d open stream(s)", finishing)
            if not await self.admission.wait_idle(self.finals_timeout_s):
                log.warning("drain: cancelling %d stream(s) that did not finish", self.admission.active)
        await self.stop()

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._health_server is not None:
            await self._health_server.stop(0)
            self._health_server = None
        await self.registry.stop()
        log.info("server stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
