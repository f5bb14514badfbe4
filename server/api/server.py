"""The gRPC server: Recognizer service, health checking, reflection, draining."""

from __future__ import annotations

import logging

import grpc
from asr_client.api.asr.v1 import asr_pb2, asr_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.api.admission import Admission
from server.api.servicer import MAX_RECOGNIZE_MESSAGE_BYTES, RecognizerServicer
from server.engine.registry import ModelRegistry

log = logging.getLogger(__name__)

SERVICE_NAME = asr_pb2.DESCRIPTOR.services_by_name["Recognizer"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class AsrServer:
    """A grpc.aio server around a model registry.

    Health is NOT_SERVING until the models are warmed up, and again from the start of a
    drain, so load balancers and Kubernetes stop sending new streams first.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        host: str = "0.0.0.0",
        port: int = 50051,
        max_streams: int = 64,
        drain_timeout_s: float = 30.0,
        warmup: bool = True,
    ) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.drain_timeout_s = drain_timeout_s
        self.warmup = warmup
        self.admission = Admission(max_streams)
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        """Listen, warm up the models, then report SERVING; returns the bound port."""
        # Room for a Recognize request at its documented limit plus its configuration.
        max_message = MAX_RECOGNIZE_MESSAGE_BYTES + 64 * 1024
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.so_reuseport", 0),
            ]
        )
        servicer = RecognizerServicer(self.registry, self.admission)
        asr_pb2_grpc.add_RecognizerServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME),
            server,
        )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.host}:{self.requested_port}")
        await server.start()
        self._server = server
        log.info("gRPC listening on %s:%d; warming up", self.host, self.port)
        await self.registry.start(warmup=self.warmup)
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving models %s (default %s)", sorted(self.registry.engines), self.registry.default)
        return self.port

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
            log.warning("drain timeout: cancelling %d stream(s)", self.admission.active)
        await self.stop()

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        await self.registry.stop()
        log.info("server stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
