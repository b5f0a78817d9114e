"""TLS material for gRPC servers, gRPC channels and NATS connections.

Certificate and key files are read when a server or connection is built at start, and
checked there: an unreadable file, a file that holds no PEM certificate, a key that does not
belong to its certificate, or half of a certificate/key pair stops the start with a
`ConfigError` naming the variable. Empty paths mean plaintext, the local default.

A gRPC server also picks up renewed files (cert-manager rewrites its Secret before the old
certificate expires): at a new connection, at most once a second, it compares the files'
stat stamps and, when they changed, reads and checks them again; a broken or half-written
renewal is logged and the certificate in use is kept. Clients read their files once.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import structlog
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from kiln.common.config import ConfigError
from kiln.common.settings import GrpcClientTlsSettings, NatsTlsSettings, ServerTlsSettings

log = structlog.get_logger("kiln.tls")


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A PEM certificate chain and its private key, checked to belong together."""

    certificate_chain: bytes
    private_key: bytes


def read_file(variable: str, path: str) -> bytes:
    """The bytes of `path`; ConfigError naming `variable` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(variable, f"cannot read {path}: {error.strerror or error}") from None


def read_certificates(variable: str, path: str) -> bytes:
    """A PEM file holding one or more certificates (a chain or a CA bundle)."""
    data = read_file(variable, path)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(variable, f"{path} holds no PEM certificate") from None
    return data


def read_key_pair(
    cert_variable: str, cert_path: str, key_variable: str, key_path: str
) -> KeyPair | None:
    """The pair, None when both paths are empty; ConfigError when only one is set, a file is
    unreadable or malformed, or the key is not the certificate's."""
    if not cert_path and not key_path:
        return None
    if not cert_path:
        raise ConfigError(cert_variable, f"is required when {key_variable} is set")
    if not key_path:
        raise ConfigError(key_variable, f"is required when {cert_variable} is set")
    chain = read_certificates(cert_variable, cert_path)
    key_data = read_file(key_variable, key_path)
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            key_variable, f"{key_path} holds no unencrypted PEM private key"
        ) from None
    leaf = x509.load_pem_x509_certificates(chain)[0]
    if leaf.public_key() != key.public_key():
        raise ConfigError(key_variable, f"{key_path} is not the key of {cert_path}")
    return KeyPair(chain, key_data)


def server_credentials(
    settings: ServerTlsSettings, reload_interval: float = 1.0
) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC server (requiring client certificates when a client CA
    is set) that follow renewals of the files, or None for plaintext."""
    if not settings.grpc_tls_cert_file and not settings.grpc_tls_key_file:
        if settings.grpc_tls_client_ca_file:
            raise ConfigError(
                "GRPC_TLS_CERT_FILE", "is required when GRPC_TLS_CLIENT_CA_FILE is set"
            )
        return None
    files = ServerCertificateFiles(settings, reload_interval)
    return grpc.dynamic_ssl_server_credentials(
        files.configuration(),
        files.renewed,
        require_client_authentication=bool(settings.grpc_tls_client_ca_file),
    )


class ServerCertificateFiles:
    """The server's certificate, key and client CA files, re-read when they change."""

    def __init__(self, settings: ServerTlsSettings, reload_interval: float) -> None:
        self._settings = settings
        self._interval = reload_interval
        self._paths = [
            p
            for p in (
                settings.grpc_tls_cert_file,
                settings.grpc_tls_key_file,
                settings.grpc_tls_client_ca_file,
            )
            if p
        ]
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        try:
            self._stamp = self._stat()
        except OSError:
            self._stamp = []  # configuration() reports the missing file by its variable

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        """Reads and checks the files now; ConfigError naming the variable at fault."""
        pair = read_key_pair(
            "GRPC_TLS_CERT_FILE",
            self._settings.grpc_tls_cert_file,
            "GRPC_TLS_KEY_FILE",
            self._settings.grpc_tls_key_file,
        )
        assert pair is not None  # server_credentials returned early when both are unset
        client_ca = self._settings.grpc_tls_client_ca_file
        return grpc.ssl_server_certificate_configuration(
            [(pair.private_key, pair.certificate_chain)],
            root_certificates=read_certificates("GRPC_TLS_CLIENT_CA_FILE", client_ca)
            if client_ca
            else None,
        )

    def renewed(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc at new connections: the new configuration when the files changed
        and check out, else None (keep the current one)."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < self._interval:
                return None
            self._checked_at = now
            try:
                stamp = self._stat()
            except OSError:
                return None  # mid-rewrite; look again later
            if stamp == self._stamp:
                return None
            try:
                configuration = self.configuration()
            except ConfigError as error:
                log.warning("tls_reload_failed", variable=error.variable, problem=error.problem)
                return None
            self._stamp = stamp
            log.info("tls_certificate_reloaded")
            return configuration

    def _stat(self) -> list[tuple[int, int, int]]:
        # Kubernetes swaps a Secret volume's files through a symlink: stat follows it.
        stats = [os.stat(p) for p in self._paths]
        return [(s.st_ino, s.st_size, s.st_mtime_ns) for s in stats]


def channel_credentials(settings: GrpcClientTlsSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials for calling another Kiln service, or None for plaintext."""
    pair = read_key_pair(
        "GRPC_CLIENT_CERT_FILE",
        settings.grpc_client_cert_file,
        "GRPC_CLIENT_KEY_FILE",
        settings.grpc_client_key_file,
    )
    if not settings.grpc_client_ca_file:
        if pair is not None:
            raise ConfigError(
                "GRPC_CLIENT_CA_FILE", "is required when GRPC_CLIENT_CERT_FILE is set"
            )
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=read_certificates("GRPC_CLIENT_CA_FILE", settings.grpc_client_ca_file),
        private_key=pair.private_key if pair else None,
        certificate_chain=pair.certificate_chain if pair else None,
    )


def channel(target: str, settings: GrpcClientTlsSettings) -> grpc.aio.Channel:
    """An asyncio channel to `target`: TLS when the settings name a CA bundle, else plain."""
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, credentials)


def nats_ssl_context(settings: NatsTlsSettings) -> ssl.SSLContext | None:
    """The SSL context for NATS when a CA bundle is set, else None (nats-py then uses the
    system roots for `tls://` URLs and plaintext for `nats://`)."""
    pair = read_key_pair(
        "NATS_TLS_CERT_FILE",
        settings.nats_tls_cert_file,
        "NATS_TLS_KEY_FILE",
        settings.nats_tls_key_file,
    )
    if not settings.nats_tls_ca_file:
        if pair is not None:
            raise ConfigError("NATS_TLS_CA_FILE", "is required when NATS_TLS_CERT_FILE is set")
        return None
    bundle = read_certificates("NATS_TLS_CA_FILE", settings.nats_tls_ca_file)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=bundle.decode())
    if pair is not None:
        # load_cert_chain reads files only; the pair was checked above, so read the paths.
        context.load_cert_chain(settings.nats_tls_cert_file, settings.nats_tls_key_file)
    return context


def nats_options(settings: NatsTlsSettings) -> dict[str, Any]:
    """The TLS keyword arguments of `nats.connect` for these settings."""
    return {
        "tls": nats_ssl_context(settings),
        "tls_handshake_first": settings.nats_tls_handshake_first,
    }
