"""The first admin: `python -m auth create-admin` and AUTH_BOOTSTRAP_ADMIN_* at start; and
the migrations that create the schema."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from alembic import command

from auth import app, bootstrap
from auth.testing import CHEAP_ARGON2, PASSWORD, make_config, new_email, start_server, stop_server
from kiln.auth.v1 import auth_pb2
from kiln.common import db, migrations


def create_admin(database_url: str, email: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """Runs `python -m auth create-admin --email EMAIL` with `stdin` piped in."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json", **CHEAP_ARGON2}
    return subprocess.run(
        [sys.executable, "-m", "auth", "create-admin", "--email", email, "--display-name", "Root"],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).parent,
    )  # fmt: skip


async def test_create_admin_command_reads_the_password_from_stdin(migrated_database: str) -> None:
    """create-admin with the password on stdin creates an admin who can sign in and use the
    admin RPCs; the password is not echoed in its output."""
    email = new_email()
    result = create_admin(migrated_database, email, PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert "admin created" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    server = await start_server(make_config(migrated_database))
    try:
        login = await server.login(email)
        assert login.user.role == auth_pb2.ROLE_ADMIN
        assert login.user.display_name == "Root"
        metadata = (("authorization", f"Bearer {login.tokens.access_token}"),)
        await server.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=metadata)
    finally:
        await stop_server(server)


def test_create_admin_command_failures(migrated_database: str, database_url: str) -> None:
    """A weak password exits 2 naming the field; a taken email exits 1; an unmigrated
    database exits 1 saying how to migrate. Never a traceback."""
    weak = create_admin(migrated_database, new_email(), "short\n")
    assert weak.returncode == 2
    assert "password" in weak.stderr
    email = new_email()
    assert create_admin(migrated_database, email, PASSWORD + "\n").returncode == 0
    taken = create_admin(migrated_database, email, PASSWORD + "\n")
    assert taken.returncode == 1
    assert "already exists" in taken.stderr
    for result in (weak, taken):
        assert "Traceback" not in result.stderr


def test_create_admin_prompts_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the password is asked twice with getpass; a mismatch exits 2."""
    answers = iter([PASSWORD, PASSWORD, PASSWORD, "different"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda _prompt: next(answers))
    assert bootstrap.read_password() == PASSWORD
    with pytest.raises(SystemExit) as caught:
        bootstrap.read_password()
    assert caught.value.code == 2


async def test_bootstrap_admin_from_config(migrated_database: str) -> None:
    """AUTH_BOOTSTRAP_ADMIN_EMAIL/PASSWORD create the admin on first start; later starts
    leave it alone (no error, no duplicate, password unchanged)."""
    email = new_email()
    variables = {"AUTH_BOOTSTRAP_ADMIN_EMAIL": email, "AUTH_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD}
    for password in (PASSWORD, "another password entirely"):
        variables["AUTH_BOOTSTRAP_ADMIN_PASSWORD"] = password
        server = await start_server(make_config(migrated_database, **variables))
        try:
            login = await server.login(email, PASSWORD)
            assert login.user.role == auth_pb2.ROLE_ADMIN
        finally:
            await stop_server(server)


async def test_bootstrap_never_promotes_an_existing_account(migrated_database: str) -> None:
    """If someone registered the bootstrap email first, they stay a plain user."""
    email = new_email()
    first = await start_server(make_config(migrated_database))
    try:
        await first.register(email)
    finally:
        await stop_server(first)
    server = await start_server(
        make_config(
            migrated_database,
            AUTH_BOOTSTRAP_ADMIN_EMAIL=email,
            AUTH_BOOTSTRAP_ADMIN_PASSWORD="the real admin password",
        )
    )
    try:
        assert (await server.login(email)).user.role == auth_pb2.ROLE_USER
        with pytest.raises(grpc.aio.AioRpcError):
            await server.login(email, "the real admin password")
    finally:
        await stop_server(server)


def test_bootstrap_without_password_refuses_to_start(migrated_database: str) -> None:
    """AUTH_BOOTSTRAP_ADMIN_EMAIL without its password: the service exits 2 naming
    AUTH_BOOTSTRAP_ADMIN_PASSWORD."""
    env = {
        "PATH": "",
        "DATABASE_URL": migrated_database,
        "AUTH_BOOTSTRAP_ADMIN_EMAIL": new_email(),
        "AUTH_SIGNING_KEYS": make_config(migrated_database).signing_keys_pem,
        "GRPC_PORT": "0",
        "METRICS_PORT": "-1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "auth"], env=env, capture_output=True, text=True, timeout=60,
        check=False, cwd=Path(__file__).parent,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "AUTH_BOOTSTRAP_ADMIN_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


async def test_migrations_upgrade_downgrade_upgrade(database_url: str) -> None:
    """The auth migrations apply to an empty database, revert to the bare schema, and apply
    again; the service refuses to start on an unmigrated schema."""
    cfg = make_config(database_url)
    engine = db.create_engine(cfg, application_name="auth-test")
    try:
        with pytest.raises(migrations.SchemaOutdatedError):
            await migrations.ensure_current(engine, app.MIGRATIONS, app.SCHEMA, "auth")
        app.migrate(cfg)
        await migrations.ensure_current(engine, app.MIGRATIONS, app.SCHEMA, "auth")
        command.downgrade(
            migrations.alembic_config(app.MIGRATIONS, database_url, app.SCHEMA), "0001"
        )
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT to_regclass('auth.users')")) is None
        app.migrate(cfg)
        async with engine.connect() as conn:
            tables = set(
                await conn.scalars(
                    sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'auth'")
                )
            )
        assert {"users", "refresh_tokens", "api_keys", "login_throttle"} <= tables
    finally:
        await engine.dispose()
