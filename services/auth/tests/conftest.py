"""Fixtures for the auth tests: a migrated database and a real auth server on port 0.

Most tests share one server and database per module and use fresh emails, so they stay
independent without paying for a migration each. Hashing uses cheap argon2 parameters
(auth.testing.CHEAP_ARGON2); test_passwords.py checks the production defaults.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from auth import app
from auth.testing import AuthServer, make_config, start_server, stop_server
from kiln.common.testing import AnyPostgres


@pytest.fixture(scope="module")
def auth_database(postgres_server: AnyPostgres) -> Iterator[str]:
    """A migrated database shared by one test module."""
    postgres_server.ensure_running()
    name = f"auth_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    app.migrate(make_config(url))
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def migrated_database(database_url: str) -> str:
    """A migrated database for one test alone."""
    app.migrate(make_config(database_url))
    return database_url


@pytest.fixture(scope="module")
async def auth(auth_database: str) -> AsyncIterator[AuthServer]:
    """An auth server shared by one test module."""
    server = await start_server(make_config(auth_database))
    yield server
    await stop_server(server)
