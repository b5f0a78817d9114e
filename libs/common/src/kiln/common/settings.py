"""Setting groups shared by the services; each service's config composes the ones it uses.

Names are unprefixed where every service has the same kind of setting (each process gets its
own environment, in Kubernetes and under `make run`), and prefixed with the service where a
setting is its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kiln.common.config import non_negative, one_of, positive, readable_file, setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogSettings:
    """How a process logs."""

    log_level: str = setting(
        "LOG_LEVEL", "Minimum log level.", "info", check=one_of("debug", "info", "warning", "error")
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "`json`, `console`, or `auto` (console on a TTY).",
        "auto",
        check=one_of("auto", "json", "console"),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerTlsSettings:
    """TLS of a process's gRPC server; plaintext when no certificate is set."""

    grpc_tls_cert_file: str = setting(
        "GRPC_TLS_CERT_FILE",
        "PEM certificate chain of the gRPC server; set with GRPC_TLS_KEY_FILE to serve TLS "
        "only (plaintext when empty). Renewed files are picked up without a restart.",
        "",
        check=readable_file,
    )
    grpc_tls_key_file: str = setting(
        "GRPC_TLS_KEY_FILE", "PEM private key of GRPC_TLS_CERT_FILE.", "", check=readable_file
    )
    grpc_tls_client_ca_file: str = setting(
        "GRPC_TLS_CLIENT_CA_FILE",
        "PEM CA bundle; when set, clients must present a certificate it signed (mTLS).",
        "",
        check=readable_file,
    )
    grpc_health_port: int = setting(
        "GRPC_HEALTH_PORT",
        "Port of a plaintext server with only grpc.health.v1.Health (and reflection of it), "
        "for probes that cannot speak TLS (Kubernetes `grpc:` probes); -1 turns it off, 0 "
        "picks a free one.",
        -1,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerSettings(LogSettings, ServerTlsSettings):
    """The gRPC server of a process."""

    grpc_host: str = setting("GRPC_HOST", "Address the gRPC server binds.", "0.0.0.0")  # noqa: S104
    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50051, check=non_negative
    )
    grpc_port_fallback: bool = setting(
        "GRPC_PORT_FALLBACK",
        "When GRPC_PORT is taken, bind a free port instead of failing (local development; "
        "read the port from GRPC_PORT_FILE).",
        False,
    )
    grpc_port_file: str = setting(
        "GRPC_PORT_FILE",
        "After binding, the server writes the port it got to this file, so whoever started "
        "it learns the port from the process itself; empty: no file.",
        "",
    )
    grace_period: float = setting(
        "GRACE_PERIOD_SECONDS",
        "On SIGTERM, how long in-flight RPCs may run before they are cancelled.",
        20.0,
        check=non_negative,
    )
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        "Largest gRPC request message accepted; each service's default fits its API.",
        4 * 1024 * 1024,
        check=positive,
    )
    max_send_message_bytes: int = setting(
        "MAX_SEND_MESSAGE_BYTES", "Largest gRPC message sent.", 16 * 1024 * 1024, check=positive
    )
    max_pending_requests: int = setting(
        "MAX_PENDING_REQUESTS",
        "Requests grpc core queues before shedding load (its default of ~1000 is low).",
        20000,
        check=positive,
    )
    shutdown_delay: float = setting(
        "SHUTDOWN_DELAY_SECONDS",
        "On SIGTERM, how long health reports NOT_SERVING before the server stops taking calls "
        "(lets load balancers notice).",
        1.0,
        check=non_negative,
    )
    metrics_port: int = setting(
        "METRICS_PORT",
        "Port of the Prometheus /metrics endpoint; 0 picks a free one, -1 turns it off.",
        9464,
    )
    health_probe_interval: float = setting(
        "HEALTH_PROBE_INTERVAL_SECONDS",
        "How often dependencies are probed to set the health status.",
        1.0,
        check=positive,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """The PostgreSQL connection pool."""

    database_url: str = setting(
        "DATABASE_URL", "PostgreSQL URL, e.g. postgresql://user:pass@host:5432/kiln.", secret=True
    )
    db_pool_size: int = setting("DB_POOL_SIZE", "Connections kept open.", 10, check=positive)
    db_max_overflow: int = setting(
        "DB_MAX_OVERFLOW", "Extra connections under load.", 10, check=non_negative
    )
    db_pool_timeout: float = setting(
        "DB_POOL_TIMEOUT_SECONDS", "How long a request waits for a connection.", 5.0, check=positive
    )
    db_statement_timeout: float = setting(
        "DB_STATEMENT_TIMEOUT_SECONDS", "Server-side limit on one statement.", 30.0, check=positive
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class NatsTlsSettings:
    """TLS of the NATS connection (also used for `tls://` URLs)."""

    nats_tls_ca_file: str = setting(
        "NATS_TLS_CA_FILE",
        "PEM CA bundle that verifies the NATS server; setting it turns TLS on (the system "
        "roots when empty and a URL is `tls://`).",
        "",
        check=readable_file,
    )
    nats_tls_cert_file: str = setting(
        "NATS_TLS_CERT_FILE",
        "PEM client certificate for NATS servers that verify clients (set with the key).",
        "",
        check=readable_file,
    )
    nats_tls_key_file: str = setting(
        "NATS_TLS_KEY_FILE", "PEM private key of NATS_TLS_CERT_FILE.", "", check=readable_file
    )
    nats_tls_handshake_first: bool = setting(
        "NATS_TLS_HANDSHAKE_FIRST",
        "Start TLS before the server says anything, so nothing is ever sent in plaintext (not "
        "even to an impostor claiming TLS is not required); the server needs `tls { "
        "handshake_first: true }`.",
        False,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class NatsSettings(NatsTlsSettings):
    """The NATS connection."""

    nats_url: str = setting(
        "NATS_URL", "NATS server URL(s), comma-separated.", "nats://127.0.0.1:4222"
    )
    nats_connect_timeout: float = setting(
        "NATS_CONNECT_TIMEOUT_SECONDS", "Timeout of one connection attempt.", 2.0, check=positive
    )
    nats_reconnect_wait: float = setting(
        "NATS_RECONNECT_WAIT_SECONDS", "Pause between reconnection attempts.", 0.5, check=positive
    )
    nats_user: str = setting(
        "NATS_USER",
        "NATS user name of this service (its role: tasks, imagegen or auth); empty connects "
        "without credentials, which a Kiln NATS server refuses.",
        "",
    )
    nats_password: str = setting(
        "NATS_PASSWORD", "Password of NATS_USER (a secret).", "", secret=True
    )
    nats_password_file: str = setting(
        "NATS_PASSWORD_FILE",
        "File holding the password of NATS_USER (a mounted Secret); used when NATS_PASSWORD "
        "is empty.",
        "",
    )

    def nats_credentials(self) -> tuple[str | None, str | None]:
        """(user, password) to connect with, (None, None) without credentials.

        OSError when NATS_PASSWORD_FILE cannot be read."""
        if not self.nats_user:
            return None, None
        password = self.nats_password
        if not password and self.nats_password_file:
            password = Path(self.nats_password_file).read_text().strip()
        return self.nats_user, password or None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenSettings:
    """How access tokens are verified."""

    jwt_issuer: str = setting("JWT_ISSUER", "The `iss` claim tokens must carry.", "kiln-auth")
    jwt_audience: str = setting("JWT_AUDIENCE", "The `aud` claim tokens must carry.", "kiln")
    jwt_leeway: float = setting(
        "JWT_LEEWAY_SECONDS", "Clock skew allowed on exp/nbf/iat.", 5.0, check=non_negative
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrpcClientTlsSettings:
    """TLS of the gRPC channels a service opens to another Kiln service (tasks and imagegen
    to auth); plaintext when no CA bundle is set."""

    grpc_client_ca_file: str = setting(
        "GRPC_CLIENT_CA_FILE",
        "PEM CA bundle that verifies the Kiln services this one calls; setting it turns TLS "
        "on for those calls.",
        "",
        check=readable_file,
    )
    grpc_client_cert_file: str = setting(
        "GRPC_CLIENT_CERT_FILE",
        "PEM client certificate for servers that require mTLS (set with the key).",
        "",
        check=readable_file,
    )
    grpc_client_key_file: str = setting(
        "GRPC_CLIENT_KEY_FILE", "PEM private key of GRPC_CLIENT_CERT_FILE.", "", check=readable_file
    )
