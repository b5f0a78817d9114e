"""Periodic clean-up: expired refresh tokens and stale throttle counters."""

from __future__ import annotations

import asyncio

import sqlalchemy.exc
import structlog

from auth import refresh_token_store
from auth.core import Core

log = structlog.get_logger("auth.housekeeping")


async def run_once(core: Core) -> tuple[int, int]:
    """Deletes what has expired; returns (refresh tokens, throttle counters) deleted."""
    now = core.clock()
    async with core.engine.begin() as conn:
        tokens = await refresh_token_store.prune(conn, now)
        counters = await core.throttle.prune(conn, now)
    return tokens, counters


async def run(core: Core, interval: float) -> None:
    """`run_once` every `interval` seconds until cancelled; a database outage is logged and
    the next round tries again."""
    while True:
        await asyncio.sleep(interval)
        try:
            tokens, counters = await run_once(core)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError) as exc:
            log.warning("housekeeping_failed", error=type(exc).__name__)
            continue
        if tokens or counters:
            log.info("housekeeping_done", refresh_tokens_deleted=tokens,
                     throttle_counters_deleted=counters)  # fmt: skip
