#!/usr/bin/env python3
"""Container health probe: asks the server's standard gRPC health service (grpc.health.v1).

Exit status 0 when the service answers SERVING, 1 otherwise (NOT_SERVING while it loads or
drains, unknown service, connection refused, timeout). Used by the Dockerfile's HEALTHCHECK
and by docker-compose; Kubernetes uses its native ``grpc`` probe instead.

Depends only on grpcio and grpcio-health-checking (never imports the server), so it starts
fast and works whatever state the server is in.

    python /opt/asr/healthcheck.py                       # 127.0.0.1:$ASR_PORT, service ""
    ASR_HEALTH_PORT=50052 python /opt/asr/healthcheck.py # the plaintext health port of a TLS server
    python /opt/asr/healthcheck.py --service asr.v1.Recognizer --timeout 2
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PORT = 50051


def default_address() -> str:
    """127.0.0.1 and the server's plaintext health port (ASR_HEALTH_PORT: a TLS server's probes go
    there) if it has one, else its gRPC port (ASR_PORT)."""
    health_port = os.environ.get("ASR_HEALTH_PORT", "-1").strip()
    if health_port not in {"", "-1", "0"}:
        return f"127.0.0.1:{health_port}"
    return f"127.0.0.1:{os.environ.get('ASR_PORT', DEFAULT_PORT)}"


def probe(address: str, service: str, timeout: float) -> tuple[bool, str]:
    """Return (healthy, message) for one Check call against ``address``."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            name = code.name if code is not None else "ERROR"
            return False, f"{address} service={service!r}: {name} {getattr(err, 'details', lambda: '')()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return (
        response.status == health_pb2.HealthCheckResponse.SERVING,
        f"{address} service={service!r}: {status}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--address",
        default=None,
        help="host:port of the gRPC server (default: 127.0.0.1:$ASR_HEALTH_PORT if set, else "
        "127.0.0.1:$ASR_PORT, ASR_PORT defaulting to 50051)",
    )
    parser.add_argument("--service", default="", help='health service name ("" = the whole server)')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)

    address = args.address or default_address()
    try:
        healthy, message = probe(address, args.service, args.timeout)
    except Exception as err:  # a probe must answer with an exit status, never a traceback
        healthy, message = False, f"{address}: {type(err).__name__}: {err}"
    if not args.quiet:
        print(("healthy: " if healthy else "unhealthy: ") + message, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
