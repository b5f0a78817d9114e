"""Refresh tokens: opaque 256-bit secrets, stored as SHA-256, rotated in families.

Each sign-in starts a family. Rotating a token marks it spent and issues the next one in the
same family. A spent token presented again means two parties hold it (one of them a thief),
so the whole family is revoked and both must sign in again.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import secrets
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.tables import refresh_tokens

TOKEN_BYTES = 32


def hash_token(token: str) -> bytes:
    """What is stored for a token: SHA-256 suffices for a 256-bit random secret."""
    return hashlib.sha256(token.encode()).digest()


@dataclasses.dataclass(frozen=True)
class NewToken:
    """A freshly issued refresh token; `token` is shown to the client once."""

    token: str = dataclasses.field(repr=False)
    expire_time: datetime.datetime


class Outcome(enum.Enum):
    """What presenting a refresh token found."""

    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"


@dataclasses.dataclass(frozen=True)
class Presented:
    """The stored row a presented token matched (when it did)."""

    outcome: Outcome
    id: uuid.UUID | None = None
    family_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


async def issue(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    now: datetime.datetime,
    ttl: datetime.timedelta,
    family_id: uuid.UUID | None = None,
) -> NewToken:
    """Stores a new token in `family_id` (a new family when None) and returns it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires = now + ttl
    await conn.execute(
        refresh_tokens.insert().values(
            id=uuid.uuid4(),
            family_id=family_id or uuid.uuid4(),
            user_id=user_id,
            token_hash=hash_token(token),
            create_time=now,
            expire_time=expires,
        )
    )
    return NewToken(token, expires)


async def present(conn: AsyncConnection, token: str, now: datetime.datetime) -> Presented:
    """Looks the token up (locking its row until the transaction ends) and judges it."""
    row = (
        (
            await conn.execute(
                sa.select(refresh_tokens)
                .where(refresh_tokens.c.token_hash == hash_token(token))
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return Presented(Outcome.UNKNOWN)
    if row["revoke_time"] is not None:
        outcome = Outcome.REVOKED
    elif row["spent_time"] is not None:
        outcome = Outcome.REUSED
    elif row["expire_time"] <= now:
        outcome = Outcome.EXPIRED
    else:
        outcome = Outcome.VALID
    return Presented(outcome, row["id"], row["family_id"], row["user_id"])


async def mark_spent(conn: AsyncConnection, token_id: uuid.UUID, now: datetime.datetime) -> None:
    """Marks a token used; presenting it again counts as reuse."""
    await conn.execute(
        refresh_tokens.update().where(refresh_tokens.c.id == token_id).values(spent_time=now)
    )


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID, now: datetime.datetime) -> int:
    """Revokes every token of a family; returns how many were still unrevoked."""
    result = await conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoke_time.is_(None))
        .values(revoke_time=now)
    )
    return result.rowcount


async def revoke_user(conn: AsyncConnection, user_id: uuid.UUID, now: datetime.datetime) -> int:
    """Revokes every token of a user; returns how many were still unrevoked."""
    result = await conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoke_time.is_(None))
        .values(revoke_time=now)
    )
    return result.rowcount


async def prune(conn: AsyncConnection, now: datetime.datetime) -> int:
    """Deletes tokens past their expiry (they can no longer be used nor reused)."""
    result = await conn.execute(refresh_tokens.delete().where(refresh_tokens.c.expire_time < now))
    return result.rowcount
