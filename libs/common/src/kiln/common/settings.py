"""Setting groups shared by the services; each service's config composes the ones it uses.

Names are unprefixed where every service has the same kind of setting (each process gets its
own environment, in Kubernetes and under `make run`), and prefixed with the service where a
setting is its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kiln.common.config import non_negative, one_of, positive, setting


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
class ServerSettings(LogSettings):
    """The gRPC server of a process."""

    grpc_host: str = setting("GRPC_HOST", "Address the gRPC server binds.", "0.0.0.0")  # noqa: S104
    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50051, check=non_negative
    )
    grace_period: float = setting(
        "GRACE_PERIOD_SECONDS",
        "On SIGTERM, how long in-flight RPCs may run before they are cancelled.",
        20.0,
        check=non_negative,
    )
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        "Largest gRPC message accepted or sent.",
        16 * 1024 * 1024,
        check=positive,
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
class NatsSettings:
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
