"""A failed statement's parameters never reach a log line: the engine hides them from
SQLAlchemy's exception text, and the log processor withholds the database's own message
(PostgreSQL quotes the offending value in it)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import sqlalchemy
import sqlalchemy.exc
import structlog

from kiln.common import db
from kiln.common.settings import DatabaseSettings
from kiln.common.testing.logs import captured_json_logs

SECRET = "caller-secret-4f1c9a"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged, rendered as the production JSON handler renders it."""
    with captured_json_logs("test") as buffer:
        yield buffer


async def test_statement_parameters_never_reach_the_logs(
    database_url: str, captured_logs: io.StringIO
) -> None:
    """A statement failing on a caller's value is logged (as the RPC error mapper logs an
    INTERNAL error) with its type, SQLSTATE and frames, but not the value."""
    engine = db.create_engine(DatabaseSettings(database_url=database_url), "test")
    try:
        with pytest.raises(sqlalchemy.exc.DataError) as caught:
            async with engine.connect() as conn:
                await conn.execute(sqlalchemy.text("SELECT CAST(:v AS integer)"), {"v": SECRET})
    finally:
        await engine.dispose()
    assert SECRET not in str(caught.value).split("\n")[-1]  # [parameters: ...] is hidden
    structlog.get_logger("test").error("rpc_internal_error", error_id="e1", exc_info=caught.value)
    logged = captured_logs.getvalue()
    assert "rpc_internal_error" in logged and "SQLSTATE 22P02" in logged
    assert SECRET not in logged
