"""A JetStream cluster of nats-servers on this machine, for tests of replication.

Every server has its own store, ports and log, the same authorization (one superuser
password), and routes to all the others. Servers can be killed and restarted one by one
(`servers[i].kill()`, `.start()`), like a single `NatsServer`.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Self

from kiln.common.testing import ports
from kiln.common.testing._process import ServerStartError
from kiln.common.testing.nats_server import SUPERUSER, ClusterRoutes, NatsServer


class NatsCluster:
    """`size` nats-servers forming one JetStream cluster named `kiln-test`."""

    def __init__(self, size: int = 3, *, host: str = "127.0.0.1") -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="kiln-nats-cluster-"))
        self.superuser_password = secrets.token_hex(16)
        route_ports = [ports.free_port(host) for _ in range(size)]
        self.servers = [
            NatsServer(
                host=host,
                directory=self.directory / f"n{i}",
                superuser_password=self.superuser_password,
                cluster=ClusterRoutes(
                    name="kiln-test",
                    server_name=f"n{i}",
                    port=route_ports[i],
                    routes=[p for j, p in enumerate(route_ports) if j != i],
                ),
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every server's client URL with the superuser's credentials, comma-separated."""
        return ",".join(
            f"nats://{SUPERUSER}:{self.superuser_password}@{s.host}:{s.port}" for s in self.servers
        )

    def start(self, timeout: float = 30.0) -> Self:
        """Starts every server and waits until JetStream is up on each (a meta leader)."""
        for server in self.servers:
            server.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Blocks until every running server's full /healthz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.healthy() for s in self.servers if s.running):
                return
            time.sleep(0.1)
        raise ServerStartError("nats cluster", f"not healthy after {timeout}s")

    def close(self) -> None:
        """Stops every server and deletes the cluster's directory."""
        for server in self.servers:
            server.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()
