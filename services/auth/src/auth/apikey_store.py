"""API keys: `kiln_<prefix>_<secret>`, stored as SHA-256 of the whole key.

The prefix (8 hex characters) is shown in listings so people can tell keys apart; the secret
is 256 random bits, so a plain SHA-256 is enough to store it (no slow hash needed).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.models import ApiKey
from auth.tables import api_keys
from kiln.common import paging
from kiln.common.principal import Role

KEY_PREFIX = "kiln"
SECRET_BYTES = 32
_METADATA = [c for c in api_keys.c if c.name not in ("secret_hash", "created_by")]


def new_secret() -> tuple[str, str]:
    """A fresh (prefix, full key)."""
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def hash_key(key: str) -> bytes:
    """What is stored for a key."""
    return hashlib.sha256(key.encode()).digest()


def looks_like_key(key: str) -> bool:
    """Whether `key` has the shape of one of ours (checked before any lookup)."""
    parts = key.split("_", 2)
    return len(parts) == 3 and parts[0] == KEY_PREFIX and len(parts[1]) == 8 and bool(parts[2])


def _api_key(row: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        prefix=row["prefix"],
        role=Role(row["role"]),
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        revoke_time=row["revoke_time"],
        last_used_time=row["last_used_time"],
    )


async def insert(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    name: str,
    role: Role,
    expire_time: datetime.datetime | None,
    created_by: uuid.UUID,
    now: datetime.datetime,
) -> tuple[ApiKey, str]:
    """Stores a new key; returns its metadata and the full key (shown once)."""
    prefix, key = new_secret()
    values = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "name": name,
        "prefix": prefix,
        "secret_hash": hash_key(key),
        "role": role.value,
        "created_by": created_by,
        "create_time": now,
        "expire_time": expire_time,
        "revoke_time": None,
        "last_used_time": None,
    }
    await conn.execute(api_keys.insert().values(values))
    return _api_key(values), key


async def find_by_key(conn: AsyncConnection, key: str) -> ApiKey | None:
    """The key whose hash matches `key`, or None."""
    row = (
        (await conn.execute(sa.select(*_METADATA).where(api_keys.c.secret_hash == hash_key(key))))
        .mappings()
        .first()
    )
    return _api_key(row) if row else None


async def get(conn: AsyncConnection, key_id: uuid.UUID) -> ApiKey | None:
    """The key with `key_id`, or None."""
    row = (
        (await conn.execute(sa.select(*_METADATA).where(api_keys.c.id == key_id)))
        .mappings()
        .first()
    )
    return _api_key(row) if row else None


async def touch(conn: AsyncConnection, key_id: uuid.UUID, now: datetime.datetime) -> None:
    """Records that the key was just exchanged for a token."""
    await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_time=now))


async def revoke(conn: AsyncConnection, key_id: uuid.UUID, now: datetime.datetime) -> ApiKey | None:
    """Revokes a key (keeping the first revocation time) and returns it, or None."""
    await conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoke_time.is_(None))
        .values(revoke_time=now)
    )
    return await get(conn, key_id)


async def revoke_user(conn: AsyncConnection, user_id: uuid.UUID, now: datetime.datetime) -> int:
    """Revokes every key of a user; returns how many were live."""
    result = await conn.execute(
        api_keys.update()
        .where(api_keys.c.user_id == user_id, api_keys.c.revoke_time.is_(None))
        .values(revoke_time=now)
    )
    return result.rowcount


async def page(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID | None,
    include_revoked: bool,
    now: datetime.datetime,
    after: paging.Cursor | None,
    limit: int,
) -> list[ApiKey]:
    """Up to `limit` keys, newest first: one user's, or everyone's when `user_id` is None."""
    query = sa.select(*_METADATA).order_by(api_keys.c.create_time.desc(), api_keys.c.id.desc())
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    if not include_revoked:
        query = query.where(
            api_keys.c.revoke_time.is_(None),
            sa.or_(api_keys.c.expire_time.is_(None), api_keys.c.expire_time > now),
        )
    if after is not None:
        query = query.where(
            sa.tuple_(api_keys.c.create_time, api_keys.c.id)
            < sa.tuple_(after.create_time, after.id)
        )
    rows = (await conn.execute(query.limit(limit))).mappings().all()
    return [_api_key(row) for row in rows]
