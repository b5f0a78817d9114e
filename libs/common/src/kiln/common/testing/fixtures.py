"""pytest plugin: NATS and PostgreSQL servers for tests, shared or private.

Enable it from the root conftest with `pytest_plugins = ["kiln.common.testing.fixtures"]`.
Session servers start on first use. NATS_URL / DATABASE_URL make the session fixtures use
servers the environment runs instead; the private_* fixtures always start their own.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import types
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn, TypeAlias

import pytest

from kiln.common.testing._process import LocalServer, log_tail
from kiln.common.testing.nats_server import ExternalNats, NatsServer
from kiln.common.testing.postgres_server import ExternalPostgres, PostgresServer
from kiln.common.testing.stack import KilnStack

# What the session fixtures yield: a harness server, or the environment's (see Overrides).
AnyNats: TypeAlias = NatsServer | ExternalNats
AnyPostgres: TypeAlias = PostgresServer | ExternalPostgres

_MARKER = "requires_own_servers"


@dataclasses.dataclass(frozen=True)
class Overrides:
    """Servers the environment provides for the session fixtures."""

    nats_url: str | None
    """NATS_URL: the session `nats_server` is this server, not a private one."""
    database_url: str | None
    """DATABASE_URL: the session `postgres_server` is this server; test databases go there."""

    @classmethod
    def from_env(cls) -> Overrides:
        """Read the overrides; an empty variable counts as unset."""
        return cls(
            nats_url=os.environ.get("NATS_URL") or None,
            database_url=os.environ.get("DATABASE_URL") or None,
        )


def skip_if_external(*servers: AnyNats | AnyPostgres) -> None:
    """Skip the calling test if any server is external (fault injection would be refused)."""
    for server in servers:
        if server.is_external:
            pytest.skip(f"{server!r} is external: fault injection needs a harness server")


def _interrupt(signum: int, frame: types.FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}: skip when NATS_URL or DATABASE_URL replaces the session servers",
    )
    # SIGTERM (a cancelled CI job) would end the interpreter without fixture teardown or
    # atexit hooks, leaving servers behind; handled like Ctrl-C, both still run.
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_runtest_setup(item: pytest.Item) -> None:
    overrides = Overrides.from_env()
    if item.get_closest_marker(_MARKER) and (overrides.nats_url or overrides.database_url):
        pytest.skip("needs servers of its own, but NATS_URL or DATABASE_URL is set")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log of every harness server a failed test used to its report."""
    report = yield
    # Only setup and call: by teardown a private server's directory, log included, is gone.
    if report.failed and call.when in ("setup", "call"):
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, LocalServer):
                title = f"{value.name} log ({value.log_path})"
                report.sections.append((title, log_tail(value.log_path, lines=80)))
    return report


@pytest.fixture(scope="session")
def nats_server() -> Iterator[AnyNats]:
    """The session's NATS server (JetStream on); tests must leave it running."""
    url = Overrides.from_env().nats_url
    if url is not None:
        yield ExternalNats(url)
        return
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[AnyPostgres]:
    """The session's PostgreSQL server; tests get their own database from `database_url`."""
    url = Overrides.from_env().database_url
    if url is not None:
        yield ExternalPostgres(url)
        return
    with PostgresServer() as server:
        yield server


@pytest.fixture
def nats_url(nats_server: AnyNats) -> str:
    """The session NATS server's URL."""
    # A test that paused or killed the shared server must not break the tests after it.
    nats_server.ensure_running()
    return nats_server.url


@pytest.fixture
def database_url(postgres_server: AnyPostgres) -> Iterator[str]:
    """A fresh, empty database on the session server, dropped after the test."""
    postgres_server.ensure_running()
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.ensure_running()
    postgres_server.drop_database(name)


@pytest.fixture
def private_nats() -> Iterator[NatsServer]:
    """A NATS server for this test alone, free to stop, kill, pause and restart."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test alone, free to stop, kill, pause and restart."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def stack(nats_url: str, database_url: str, tmp_path: Path) -> Iterator[KilnStack]:
    """auth + tasks + one worker (high_priority, standard) as real processes on the session
    NATS and a fresh database."""
    kiln = KilnStack.start(
        nats_url, database_url, tmp_path, worker_env={"WORKER_QUEUES": "high_priority,standard"}
    )
    try:
        yield kiln
    finally:
        kiln.close()
