"""Server configuration from command-line flags and ``ASR_*`` environment variables."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

from server.model.checkpoint import DEFAULT_MODEL_DIR


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is
    none), at least 1. A container's CPU limit is a quota, not a mask: it does not show here."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Streaming speech recognition gRPC server.

    Every flag can also be set with an environment variable: ASR_ plus the flag name in
    upper case with underscores (--max-streams -> ASR_MAX_STREAMS). Flags win over the
    environment.
    """

    model_config = SettingsConfigDict(
        env_prefix="ASR_",
        cli_prog_name="asr-server",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        extra="ignore",
    )

    host: str = Field("0.0.0.0", description="Address the gRPC server listens on.")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free port).")
    metrics_port: int = Field(
        9400,
        ge=-1,
        le=65535,
        description="Port of the Prometheus /metrics HTTP endpoint (0 picks a free port, -1 disables it).",
    )
    model_dir: Path = Field(
        Path(DEFAULT_MODEL_DIR),
        description="Checkpoint directory of the model to serve (default: the bundled model).",
    )
    models_dir: Path | None = Field(
        None,
        description="Serve every model checkpoint found in the subdirectories of this directory "
        "instead of --model-dir.",
    )
    default_model: str | None = Field(
        None,
        description="Name of the model used by requests that name none (default: the --model-dir "
        "model, or the first by name under --models-dir).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model workers run: auto picks cuda when a GPU is present."
    )
    max_streams: int = Field(
        64,
        ge=1,
        description="Maximum concurrent recognition streams; more are refused with RESOURCE_EXHAUSTED.",
    )
    max_batch_size: int = Field(32, ge=1, description="Maximum streams batched into one model step.")
    max_wait_ms: float = Field(
        10.0,
        ge=0,
        description="How long the scheduler waits for more ready streams before running a batch "
        "smaller than --max-batch-size.",
    )
    drain_timeout_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM/SIGINT: how long in-flight streams may run to completion before the server exits.",
    )
    drain_finals_timeout_s: float = Field(
        5.0,
        ge=0,
        description="After the drain timeout: how long the open streams, finalised, get to send their "
        "last finals before the rest are cancelled.",
    )
    step_timeout_s: float = Field(
        10.0,
        ge=0,
        description="Watchdog: a model step running longer than this ends its streams with INTERNAL, and "
        "health is NOT_SERVING until the worker returns (0: no watchdog).",
    )
    idle_timeout_s: float = Field(
        30.0,
        ge=0,
        description="A stream whose client sends no message for this long ends with OUT_OF_RANGE, "
        "freeing its slot (0: no limit).",
    )
    keepalive_time_s: float = Field(
        60.0, gt=0, description="Ping a client connection after this long without traffic (HTTP/2 keepalive)."
    )
    keepalive_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Close a connection whose keepalive ping is not answered within this long; its "
        "streams are cancelled and their slots freed.",
    )
    max_connection_idle_s: float = Field(
        0.0, ge=0, description="Close a connection that has had no call for this long (0: never)."
    )
    beam_size: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Override the models' search: 1 is greedy search, more is beam search with the "
        "model's LM fusion (default: what each model's config.json decoding section says).",
    )
    int8: bool = Field(
        True,
        description="On CPU, compute the encoder's and the joiner output's matrix products in int8 with "
        "the input ranges calibrated with the model (int8_ranges.json, asr-train calibrate-int8): about "
        "a quarter cheaper model steps, held-out WER within 0.1 point, and each stream still gets exactly "
        "what it gets alone (docs/decisions/0029). A model without ranges runs float32; --no-int8 runs "
        "every model float32. Ignored on CUDA.",
    )
    workers: int = Field(
        default_factory=cpu_cores,
        ge=1,
        description="Engine processes behind the one gRPC port, each with its own copy of the models "
        "(the per-frame search, fbank and audio decoding hold Python's GIL: one process keeps one core "
        "busy). Connections are spread over them by the kernel (SO_REUSEPORT), so all the streams of "
        "one client connection go to one process; --max-streams counts across all of them. 1: one "
        "process (no child processes). Default: the CPU cores this process may use.",
    )
    threads: int = Field(
        0,
        ge=0,
        description="torch intra-op threads in all: each of the --workers "
        "processes gets an equal share (at least 1); 0: one less than the CPU cores (at least 1), "
        "leaving a core for the event loop and audio decoding.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging level.")
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate chain of the gRPC port: with --tls-key-file the port speaks TLS "
        "(default: plaintext).",
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key (unencrypted) of --tls-cert-file; give both or neither."
    )
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA certificate(s): clients must present a certificate signed by one of them "
        "(mutual TLS; needs --tls-cert-file).",
    )
    auth_token_file: Path | None = Field(
        None,
        description="File of accepted bearer tokens, one per line (blank lines and # comments ignored): "
        "every Recognizer call then needs metadata 'authorization: Bearer <token>'; health and "
        "reflection stay open.",
    )
    health_port: int = Field(
        -1,
        ge=-1,
        le=65535,
        description="Also serve grpc.health.v1 alone on this plaintext port, for probes that cannot "
        "speak TLS (Kubernetes gRPC probes) (0 picks a free port, -1: none).",
    )

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file", "auth_token_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            reason = "not a file" if path.exists() and not path.is_file() else "no such file, or not readable"
            raise PydanticCustomError("readable_file", reason)
        return path

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.max_batch_size > self.max_streams:
            # A batch can never hold more streams than may exist; clamp instead of failing.
            self.max_batch_size = self.max_streams
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise PydanticCustomError(
                "tls_pair", "--tls-cert-file and --tls-key-file go together: give both (TLS) or neither (plaintext)"
            )
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise PydanticCustomError(
                "tls_client_ca", "--tls-client-ca-file needs --tls-cert-file and --tls-key-file (mutual TLS is TLS)"
            )
        return self


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from ``argv`` (default: ``sys.argv[1:]``) over the environment.

    Exits with status 0 after --help, and with status 2 and one line per problem on
    invalid values (as argparse does for malformed flags).
    """
    try:
        return CliApp.run(Settings, cli_args=argv)
    except ValidationError as error:
        for problem in error.errors():
            field = "_".join(str(part) for part in problem["loc"])
            if not field:  # a check across settings: its message names them
                print(f"asr-server: {problem['msg']}", file=sys.stderr)
                continue
            name = f"--{field.replace('_', '-')} / ASR_{field.upper()}"
            print(f"asr-server: {name}: {problem['msg']} (got {problem.get('input')!r})", file=sys.stderr)
        raise SystemExit(2) from None
