"""Login throttling per account (email) and per client address, counted in PostgreSQL;
Register is throttled per client address with the same counters.

The counters live in the database, not in memory: with several replicas behind a load
balancer an in-memory counter would let an attacker multiply their attempts by the replica
count, and a restart would reset it.

Every attempt is counted *before* the password is checked, and a success takes its count
back. Counting first closes the check-then-act race: a burst of parallel guesses cannot all
slip past the check before the first failure is written. Past the limit within the window,
the key is locked and every attempt gets RESOURCE_EXHAUSTED with a retry delay, even with
the right password. Unknown emails are counted like known ones, so a lock reveals nothing
about which accounts exist.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.tables import login_throttle as table


@dataclasses.dataclass(frozen=True)
class Limits:
    """How many failures per window lock a key, and for how long."""

    per_account: int
    per_address: int
    window: datetime.timedelta
    lockout: datetime.timedelta
    registrations_per_address: int = 20


def account_key(email: str) -> str:
    """The counter key of an account (by its normalised email)."""
    return f"account:{email}"


def address_key(address: str) -> str:
    """The counter key of a client address."""
    return f"address:{address}"


def registration_key(address: str) -> str:
    """The counter key of Register calls from a client address (every call counts, taken
    or not, so Register is no free way to test passwords' cost or emails' existence)."""
    return f"register:{address}"


class Throttle:
    """Counts sign-in attempts and refuses them past the limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    async def begin_attempt(
        self, conn: AsyncConnection, keys: dict[str, int], now: datetime.datetime
    ) -> float | None:
        """Counts an attempt for each key (key -> its limit). Returns None when the attempt
        may go on, else the seconds until it may be tried again. Commit either way: a lock
        set here must stick.

        The upsert takes the counter's row lock and sees the latest committed lock, so
        concurrent attempts are decided one after the other, never on a stale read.
        """
        window_floor = now - self.limits.window
        for key, limit in keys.items():
            locked = sa.func.coalesce(table.c.locked_until > now, False)
            expired = table.c.window_start < window_floor
            statement = (
                pg_insert(table)
                .values(key=key, failures=1, window_start=now)
                .on_conflict_do_update(
                    index_elements=[table.c.key],
                    set_={
                        "failures": sa.case(
                            (locked, table.c.failures), (expired, 1), else_=table.c.failures + 1
                        ),
                        "window_start": sa.case(
                            (locked, table.c.window_start),
                            (expired, now),
                            else_=table.c.window_start,
                        ),
                    },
                )
                .returning(table.c.failures, table.c.locked_until)
            )
            attempts, locked_until = (await conn.execute(statement)).one()
            if locked_until is not None and locked_until > now:
                return _seconds_until(locked_until, now)
            if attempts > limit:
                # Locked: the count starts again, so after the lockout come `limit` more tries.
                locked_until = now + self.limits.lockout
                await conn.execute(
                    table.update()
                    .where(table.c.key == key)
                    .values(failures=0, window_start=now, locked_until=locked_until)
                )
                return _seconds_until(locked_until, now)
        return None

    async def succeeded(
        self, conn: AsyncConnection, *, account: str | None, address: str | None
    ) -> None:
        """Takes back a successful attempt: the account's count is cleared, the address's
        count goes down by one (other people may share that address)."""
        if account is not None:
            await conn.execute(table.delete().where(table.c.key == account))
        if address is not None:
            await conn.execute(
                table.update()
                .where(table.c.key == address, table.c.failures > 0)
                .values(failures=table.c.failures - 1)
            )

    async def prune(self, conn: AsyncConnection, now: datetime.datetime) -> int:
        """Deletes counters whose window and lock are both over."""
        result = await conn.execute(
            table.delete().where(
                table.c.window_start < now - self.limits.window,
                sa.or_(table.c.locked_until.is_(None), table.c.locked_until < now),
            )
        )
        return result.rowcount


def _seconds_until(moment: datetime.datetime, now: datetime.datetime) -> float:
    return float(max(1, math.ceil((moment - now).total_seconds())))
