"""SQL for users; every function takes the connection of the caller's transaction."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.models import User
from auth.tables import users
from kiln.common import errors, paging
from kiln.common.account_states import AccountState
from kiln.common.principal import Role

_USER_COLUMNS = [c for c in users.c if c.name != "password_hash"]
EMAIL_TAKEN = "an account with this email already exists"


def _user(row: Mapping[Any, Any]) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        active=row["active"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        tokens_not_before=row.get("tokens_not_before"),
    )


def _is_duplicate_email(exc: IntegrityError) -> bool:
    cause = exc.orig
    return (
        isinstance(cause, psycopg.errors.UniqueViolation)
        and cause.diag.constraint_name == "uq_users_email"
    )


async def insert(
    conn: AsyncConnection,
    *,
    email: str,
    display_name: str,
    password_hash: str,
    role: Role,
    now: datetime.datetime,
) -> User:
    """Adds a user; ALREADY_EXISTS when the email is taken (also when two race)."""
    values = {
        "id": uuid.uuid4(),
        "email": email,
        "display_name": display_name,
        "password_hash": password_hash,
        "role": role.value,
        "active": True,
        "create_time": now,
        "update_time": now,
    }
    try:
        # A savepoint, so the caller's transaction survives a duplicate.
        async with conn.begin_nested():
            await conn.execute(users.insert().values(values))
    except IntegrityError as exc:
        if _is_duplicate_email(exc):
            raise errors.AlreadyExists(EMAIL_TAKEN, reason="EMAIL_TAKEN") from None
        raise
    return _user(values)


async def get(conn: AsyncConnection, user_id: uuid.UUID, *, lock: bool = False) -> User | None:
    """The user with `user_id`, or None."""
    query = sa.select(*_USER_COLUMNS).where(users.c.id == user_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return _user(row) if row else None


async def email_taken(conn: AsyncConnection, email: str) -> bool:
    """Whether an account with `email` exists."""
    found = await conn.scalar(sa.select(sa.literal(1)).where(users.c.email == email))
    return found is not None


async def get_with_hash(conn: AsyncConnection, email: str) -> tuple[User, str] | None:
    """The user with `email` and their password hash, or None."""
    row = (await conn.execute(sa.select(users).where(users.c.email == email))).mappings().first()
    return (_user(row), row["password_hash"]) if row else None


async def password_hash(conn: AsyncConnection, user_id: uuid.UUID) -> str | None:
    """The stored password hash of `user_id`, or None."""
    result = await conn.scalar(sa.select(users.c.password_hash).where(users.c.id == user_id))
    return str(result) if result is not None else None


async def set_password_hash(
    conn: AsyncConnection, user_id: uuid.UUID, encoded: str, now: datetime.datetime
) -> None:
    """Replaces the password hash."""
    await conn.execute(
        users.update().where(users.c.id == user_id).values(password_hash=encoded, update_time=now)
    )


async def update(
    conn: AsyncConnection, user_id: uuid.UUID, changes: Mapping[str, Any], now: datetime.datetime
) -> User | None:
    """Applies `changes` (column -> value) and returns the user after, or None."""
    row = (
        (
            await conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values({**changes, "update_time": now})
                .returning(*_USER_COLUMNS)
            )
        )
        .mappings()
        .first()
    )
    return _user(row) if row else None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def page(
    conn: AsyncConnection, *, search: str, after: paging.Cursor | None, limit: int
) -> list[User]:
    """Up to `limit` users, newest first, after `after`, matching `search` in email or name."""
    query = sa.select(*_USER_COLUMNS).order_by(users.c.create_time.desc(), users.c.id.desc())
    if search:
        pattern = f"%{_escape_like(search)}%"
        query = query.where(
            sa.or_(
                users.c.email.ilike(pattern, escape="\\"),
                users.c.display_name.ilike(pattern, escape="\\"),
            )
        )
    if after is not None:
        query = query.where(
            sa.tuple_(users.c.create_time, users.c.id) < sa.tuple_(after.create_time, after.id)
        )
    rows = (await conn.execute(query.limit(limit))).mappings().all()
    return [_user(row) for row in rows]


def _state(row: Mapping[Any, Any]) -> AccountState:
    not_before = row["tokens_not_before"]
    return AccountState(
        role=Role(row["role"]),
        active=row["active"],
        tokens_not_before=int(not_before.timestamp()) if not_before is not None else 0,
    )


_STATE_COLUMNS = (users.c.id, users.c.role, users.c.active, users.c.tokens_not_before)


async def account_state(conn: AsyncConnection, user_id: uuid.UUID) -> AccountState | None:
    """What other services must know about `user_id` now, or None when there is no such user."""
    query = sa.select(*_STATE_COLUMNS).where(users.c.id == user_id)
    row = (await conn.execute(query)).mappings().first()
    return _state(row) if row else None


async def account_states(conn: AsyncConnection) -> dict[str, AccountState]:
    """Every user's account state, by user id (for the periodic full rewrite)."""
    rows = (await conn.execute(sa.select(*_STATE_COLUMNS))).mappings().all()
    return {str(row["id"]): _state(row) for row in rows}


async def refuse_tokens_before(
    conn: AsyncConnection, user_id: uuid.UUID, now: datetime.datetime
) -> None:
    """Every access token of `user_id` issued up to `now` stops counting.

    A token's `iat` is a whole second, so the bound is the next whole second: a token issued
    earlier in this same second is refused too (one issued later in it is stamped with the
    bound instead, see TokenIssuer.issue).
    """
    bound = now.replace(microsecond=0) + datetime.timedelta(seconds=1)
    await conn.execute(
        users.update().where(users.c.id == user_id).values(tokens_not_before=bound, update_time=now)
    )
