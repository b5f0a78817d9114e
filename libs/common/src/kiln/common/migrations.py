"""Alembic migrations per service, each in its own schema with its own version table.

Each service keeps an Alembic script folder whose `env.py` calls `run_migrations()`.
`ensure_current` tells whether a schema is older than the code (a serving process then waits,
see `kiln.common.startup`), and `upgrade()` (behind `make migrate` and `python -m <service>
migrate`) brings it up to date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kiln.common.db import sqlalchemy_url

VERSION_TABLE = "alembic_version"


class SchemaOutdatedError(Exception):
    """The database schema is older than the code; the message says how to migrate."""


def alembic_config(script_location: Path, database_url: str, schema: str) -> Config:
    """An Alembic config for one service's scripts, database and schema."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade(script_location: Path, database_url: str, schema: str, revision: str = "head") -> None:
    """Applies migrations up to `revision`."""
    command.upgrade(alembic_config(script_location, database_url, schema), revision)


def head_revision(script_location: Path) -> str:
    """The newest revision the code knows."""
    heads = ScriptDirectory(str(script_location)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head in {script_location}, found {heads}")
    return heads[0]


async def current_revision(engine: AsyncEngine, schema: str) -> str | None:
    """The revision applied to `schema`, or None when it was never migrated."""
    async with engine.connect() as connection:
        exists = await connection.scalar(
            text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{schema}.{VERSION_TABLE}"}
        )
        if not exists:
            return None
        value = await connection.scalar(text(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}'))  # noqa: S608 - schema is ours
        return str(value) if value is not None else None


async def ensure_current(
    engine: AsyncEngine, script_location: Path, schema: str, service: str
) -> None:
    """Raises SchemaOutdatedError unless `schema` is at the code's head revision.

    A revision the code does not know is newer code's schema (a rolling upgrade in
    progress) and is accepted: migrations are written to be backward compatible.
    """
    head = head_revision(script_location)
    current = await current_revision(engine, schema)
    if current == head:
        return
    known = {s.revision for s in ScriptDirectory(str(script_location)).walk_revisions()}
    if current is None or current in known:
        raise SchemaOutdatedError(
            f"the {schema!r} schema is at revision {current or 'none'} but this code needs "
            f"{head}; run `make migrate` or `python -m {service} migrate`"
        )


def run_migrations(target_metadata: Any = None) -> None:
    """The body of every service's Alembic `env.py` (online mode only)."""
    config = context.config
    schema: str = config.attributes["schema"]
    engine = sqlalchemy.create_engine(
        config.get_main_option("sqlalchemy.url") or "", poolclass=sqlalchemy.pool.NullPool
    )
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
