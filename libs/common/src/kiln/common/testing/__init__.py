"""Test harness: private nats-server (JetStream) and PostgreSQL processes for fault tests.

The servers listen on free local ports and can be stopped, killed with SIGKILL, paused with
SIGSTOP and restarted on the same port with the same data. The pytest fixtures live in
`kiln.common.testing.fixtures`, which the root conftest loads as a plugin.
"""

from kiln.common.testing._process import (
    ExternalServerError,
    HarnessError,
    ServerStartError,
    ServerStateError,
)
from kiln.common.testing.fixtures import AnyNats, AnyPostgres, Overrides, skip_if_external
from kiln.common.testing.nats_server import ExternalNats, NatsServer, nats_server_binary
from kiln.common.testing.ports import free_port, port_open, wait_for_port
from kiln.common.testing.postgres_server import (
    ExternalPostgres,
    PostgresServer,
    create_database,
    database_url,
    drop_database,
)

__all__ = [
    "AnyNats",
    "AnyPostgres",
    "ExternalNats",
    "ExternalPostgres",
    "ExternalServerError",
    "HarnessError",
    "NatsServer",
    "Overrides",
    "PostgresServer",
    "ServerStartError",
    "ServerStateError",
    "create_database",
    "database_url",
    "drop_database",
    "free_port",
    "nats_server_binary",
    "port_open",
    "skip_if_external",
    "wait_for_port",
]
