"""A failed statement's parameters never reach a log line: the engine hides them from
SQLAlchemy's exception text, and the log processor withholds the database's own message
(PostgreSQL quotes the offending value in it)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import sqlalchemy
import sqlalchemy.exc
import structlog

from kiln.common import db
from kiln.common import logging as kiln_logging
from kiln.common.settings import DatabaseSettings

SECRET = "caller-secret-4f1c9a"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged, rendered as the production JSON handler renders it."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    kiln_logging.configure_logging("test", "debug", "json")
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.reset_defaults()


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
