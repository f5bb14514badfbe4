"""TLS credentials of the gRPC port: a certificate and key, and optionally client certificates.

The PEM files are checked with the standard library's ``ssl`` before gRPC sees them: gRPC reports
an unreadable key or a key that does not match the certificate only as "Failed to bind to
address", which sends operators looking at the wrong thing.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ServerTls:
    """Credentials for ``add_secure_port``; ``mutual``: clients must present a certificate signed
    by the client CA."""

    credentials: grpc.ServerCredentials
    mutual: bool

    def describe(self) -> str:
        return "mutual TLS (client certificates required)" if self.mutual else "TLS"


def load_server_tls(cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> ServerTls:
    """Read and check the PEM files; ``ValueError`` with a one-line reason if they are unusable."""
    _check_key_pair(cert_file, key_file)
    if client_ca_file is not None:
        _check_ca(client_ca_file)
    client_ca = client_ca_file.read_bytes() if client_ca_file is not None else None
    credentials = grpc.ssl_server_credentials(
        [(key_file.read_bytes(), cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    return ServerTls(credentials, mutual=client_ca is not None)


def _check_key_pair(cert_file: Path, key_file: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An empty password: an encrypted key fails here instead of prompting on the terminal
        # (gRPC cannot use encrypted keys either).
        context.load_cert_chain(cert_file, key_file, password="")
    except ssl.SSLError as error:
        raise ValueError(
            f"--tls-cert-file {cert_file} / --tls-key-file {key_file}: not a PEM certificate chain and its "
            f"unencrypted private key ({error.reason or error})"
        ) from None


def _check_ca(client_ca_file: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=client_ca_file)
    except ssl.SSLError as error:
        raise ValueError(
            f"--tls-client-ca-file {client_ca_file}: no PEM CA certificate in it ({error.reason or error})"
        ) from None
