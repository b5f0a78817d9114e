"""PostgreSQL access: an async SQLAlchemy 2 engine on psycopg 3, configured from settings."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from kiln.common import metrics
from kiln.common.settings import DatabaseSettings


def sqlalchemy_url(url: str) -> str:
    """`url` with the psycopg 3 driver named, accepting plain `postgresql://` URLs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("the database URL must start with postgresql://")


def create_engine(settings: DatabaseSettings, application_name: str) -> AsyncEngine:
    """An engine whose pool recovers from a restarted server (pre-ping) and whose
    statements are bounded by the configured timeout."""
    timeout_ms = int(settings.db_statement_timeout * 1000)
    engine = _create_async_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Parameters are callers' data (and secrets): keep them out of exception text.
        hide_parameters=True,
        connect_args={
            "application_name": application_name,
            "options": f"-c statement_timeout={timeout_ms}",
            "connect_timeout": max(1, int(settings.db_pool_timeout)),
        },
    )
    metrics.track_pool(application_name, engine.sync_engine.pool)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> bool:
    """Whether the database answers a trivial query now."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True
