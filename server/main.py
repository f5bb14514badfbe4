"""``asr-server``: load the models, serve gRPC and Prometheus metrics, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import torch

from server.api.auth import load_tokens
from server.api.server import AsrServer, ConnectionPolicy
from server.api.tls import ServerTls, load_server_tls
from server.engine.registry import ModelRegistry, find_model_dirs, resolve_device
from server.metrics import serve_metrics
from server.model.checkpoint import CheckpointError
from server.settings import Settings, parse_settings
from server.workers import WorkerLink, run_workers

log = logging.getLogger("server")

# Startup failures (bad checkpoint, port in use, no GPU, unusable credentials): one clear line, exit 1.
STARTUP_ERRORS = (CheckpointError, RuntimeError, ValueError, OSError)


def model_dirs(settings: Settings) -> list[Path]:
    """The checkpoint directories to load: --model-dir, or every checkpoint under --models-dir."""
    if settings.models_dir is None:
        return [settings.model_dir]
    dirs = find_model_dirs(settings.models_dir)
    if not dirs:
        raise SystemExit(f"asr-server: no model checkpoints (subdirectories with config.json) in {settings.models_dir}")
    return dirs


def torch_threads(settings: Settings) -> int:
    """Intra-op threads of each engine process: the setting, or all cores but one (the event loop
    needs one), shared equally by the --workers processes; at least 1."""
    return max(1, (settings.threads or max(1, (os.cpu_count() or 2) - 1)) // settings.workers)


def server_tls(settings: Settings) -> ServerTls | None:
    """The gRPC port's TLS credentials, or None for plaintext (the settings checked the pairing)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return load_server_tls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)


def accepted_tokens(settings: Settings) -> frozenset[str]:
    """The bearer tokens of --auth-token-file; empty: no token asked."""
    return frozenset() if settings.auth_token_file is None else load_tokens(settings.auth_token_file)


async def serve(settings: Settings, worker: WorkerLink | None = None) -> None:
    """Run the server until SIGTERM/SIGINT, then drain.

    ``worker``: as one of the --workers processes (server/workers.py): on the ports the parent
    reserved, the stream limit counted across the workers, SERVING once all of them are ready,
    no metrics port (the parent serves the workers' metrics); the parent's "stop" messages stand
    for the signals (the worker ignores signals), and so does the parent's death.
    """
    # Credentials first: a bad certificate or token file fails in a second, not after the model load.
    tls = server_tls(settings)
    tokens = accepted_tokens(settings)
    torch.set_num_threads(torch_threads(settings))
    device = resolve_device(settings.device)
    registry = ModelRegistry.load(
        model_dirs(settings),
        device=device,
        # Slack of one batch: a cancelled stream's slot comes back after its step.
        capacity=settings.max_streams + settings.max_batch_size,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000.0,
        default=settings.default_model,
        beam_size=settings.beam_size,
        step_timeout_s=settings.step_timeout_s,
        int8=settings.int8,
    )
    if worker is None:
        serve_metrics(settings.host, settings.metrics_port)
    stop = asyncio.Event()
    server = AsrServer(
        registry,
        host=settings.host,
        port=settings.port if worker is None else worker.spec.port,
        max_streams=settings.max_streams,
        drain_timeout_s=settings.drain_timeout_s,
        finals_timeout_s=settings.drain_finals_timeout_s,
        connections=ConnectionPolicy(
            idle_timeout_s=settings.idle_timeout_s,
            keepalive_time_s=settings.keepalive_time_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
            max_connection_idle_s=settings.max_connection_idle_s,
        ),
        tls=tls,
        tokens=tokens,
        health_port=(None if settings.health_port < 0 else settings.health_port)
        if worker is None
        else worker.spec.health_port,
        reuse_port=worker is not None,
        shared_streams=None if worker is None else worker.shared_streams(),
        before_serving=None if worker is None else worker.wait_all_ready,
    )
    loop = asyncio.get_running_loop()
    if worker is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    else:
        worker.listen(loop, stop.set)  # the parent's "stop" (its signals), or its death
    await server.start()
    await stop.wait()
    log.info("shutdown signal received")
    # A second signal during the drain stops at once.
    drain = asyncio.create_task(server.drain())
    stop.clear()
    second = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({drain, second}, return_when=asyncio.FIRST_COMPLETED)
    if drain not in done:
        log.warning("second shutdown signal: stopping now")
        drain.cancel()
        await server.stop(grace=0)
    second.cancel()


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.info("settings: %s", settings.model_dump_json())
    try:
        if settings.workers == 1:
            asyncio.run(serve(settings))
            return
        # Credentials and model folders first, as one process checks them: a bad file fails in a
        # second, once, rather than in every worker after the model load.
        server_tls(settings)
        accepted_tokens(settings)
        model_dirs(settings)
        status = run_workers(settings)
    except STARTUP_ERRORS as error:
        log.error("asr-server: %s", error)
        raise SystemExit(1) from None
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
