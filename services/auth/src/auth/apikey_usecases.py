"""API key management: CreateApiKey, ListApiKeys, RevokeApiKey.

A user manages their own keys; an admin manages everyone's. A key's role never exceeds its
user's, and another user's key is NOT_FOUND to a non-admin, exactly like a missing one.
"""

from __future__ import annotations

import datetime

import structlog

from auth import account_usecases, apikey_store, user_store, validation
from auth.core import Core
from auth.models import ApiKey, Page
from kiln.common import errors, ids, paging, principal
from kiln.common.principal import Principal, Role

_KEYS_DEFAULT_PAGE = 100

log = structlog.get_logger("auth.credentials")


async def _caller(core: Core) -> Principal:
    """The caller; an admin token is re-checked against the database."""
    caller = principal.current()
    if caller.is_admin:
        return await account_usecases.require_admin(core)
    return caller


async def create(
    core: Core,
    name: str,
    role: Role | None,
    expire_time: datetime.datetime | None,
    user_id: str,
) -> tuple[ApiKey, str]:
    """A new key and its secret (returned this once). `role` None means `user`."""
    caller = await _caller(core)
    name = name.strip()
    violations = validation.name_violations("name", name)
    now = core.clock()
    if expire_time is not None and expire_time <= now:
        violations.append(errors.FieldViolation("expire_time", "must be in the future"))
    validation.raise_if(violations)
    role = role or Role.USER
    if role is Role.ADMIN and not caller.is_admin:
        raise errors.PermissionDenied(
            "only admins may create admin keys", reason="ADMIN_ROLE_REQUIRED"
        )
    caller_id = ids.parse_id("sub", caller.user_id)
    owner_id = ids.parse_id("user_id", user_id) if user_id else caller_id
    if owner_id != caller_id and not caller.is_admin:
        raise errors.PermissionDenied(
            "only admins may create keys for another user", reason="ADMIN_ROLE_REQUIRED"
        )
    async with core.engine.begin() as conn:
        owner = await user_store.get(conn, owner_id)
        if owner is None:
            raise errors.NotFound("user", str(owner_id))
        if not owner.active:
            raise errors.FailedPrecondition("the user is deactivated", reason="USER_DEACTIVATED")
        if role is Role.ADMIN and owner.role is not Role.ADMIN:
            raise errors.InvalidArgument.field("role", "must not exceed the user's own role")
        api_key, secret = await apikey_store.insert(
            conn,
            user_id=owner_id,
            name=name,
            role=role,
            expire_time=expire_time,
            created_by=caller_id,
            now=now,
        )
    log.info("api_key_created", key_id=str(api_key.id), prefix=api_key.prefix,
             user_id=str(owner_id), role=role.value, by=caller.user_id)  # fmt: skip
    return api_key, secret


async def list_keys(core: Core, size: int, token: str, include_revoked: bool) -> Page[ApiKey]:
    """The caller's keys, or everyone's for an admin, newest first (metadata only)."""
    caller = await _caller(core)
    limit = paging.page_size(size, _KEYS_DEFAULT_PAGE)
    owner = None if caller.is_admin else ids.parse_id("sub", caller.user_id)
    query = f"api_keys:{owner or '*'}:{include_revoked}"
    filters = paging.fingerprint(query)
    after = paging.Cursor.after(token, filters)
    async with core.engine.connect() as conn:
        found = await apikey_store.page(
            conn,
            user_id=owner,
            include_revoked=include_revoked,
            now=core.clock(),
            after=after,
            limit=limit + 1,
        )
    return Page(*paging.cut(found, limit, filters, paging.keyset_position))


async def revoke(core: Core, key_id: str) -> ApiKey:
    """Revokes a key at once (idempotent: the first revocation time is kept)."""
    caller = await _caller(core)
    parsed = ids.parse_id("id", key_id)
    async with core.engine.begin() as conn:
        found = await apikey_store.get(conn, parsed)
        if found is None or (not caller.is_admin and str(found.user_id) != caller.user_id):
            raise errors.NotFound("api key", key_id)
        revoked = await apikey_store.revoke(conn, parsed, core.clock())
    if revoked is None:
        raise errors.NotFound("api key", key_id)
    log.info("api_key_revoked", key_id=key_id, by=caller.user_id)
    return revoked
