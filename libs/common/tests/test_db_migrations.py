"""The database helpers and the per-service migration flow against a real PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from kiln.common import db, migrations
from kiln.common.settings import DatabaseSettings
from tasks import app as tasks_app


def test_url_gets_the_psycopg_driver() -> None:
    """Plain postgresql:// URLs are accepted and mapped to psycopg 3."""
    assert db.sqlalchemy_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.sqlalchemy_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    with pytest.raises(ValueError, match=r"postgresql://"):
        db.sqlalchemy_url("mysql://u@h/d")


async def test_schema_check_and_upgrade(database_url: str) -> None:
    """A fresh database is refused with a hint to migrate; after upgrade it passes, and the
    version table lives in the service's own schema."""
    engine = db.create_engine(DatabaseSettings(database_url=database_url), "test")
    try:
        assert await db.ping(engine)
        with pytest.raises(migrations.SchemaOutdatedError, match="make migrate"):
            await migrations.ensure_current(engine, tasks_app.MIGRATIONS, "tasks", "tasks")
        migrations.upgrade(tasks_app.MIGRATIONS, database_url, "tasks")
        await migrations.ensure_current(engine, tasks_app.MIGRATIONS, "tasks", "tasks")
        async with engine.connect() as connection:
            public_table = await connection.scalar(
                text("SELECT to_regclass('public.alembic_version')")
            )
        assert public_table is None
        assert await migrations.current_revision(engine, "tasks") == migrations.head_revision(
            tasks_app.MIGRATIONS
        )
    finally:
        await engine.dispose()


async def test_statement_timeout_applies(database_url: str) -> None:
    """The configured statement timeout bounds every query."""
    engine = db.create_engine(
        DatabaseSettings(database_url=database_url, db_statement_timeout=0.2), "test"
    )
    try:
        async with engine.connect() as connection:
            with pytest.raises(sqlalchemy.exc.OperationalError, match="statement timeout"):
                await connection.execute(text("SELECT pg_sleep(2)"))
    finally:
        await engine.dispose()
