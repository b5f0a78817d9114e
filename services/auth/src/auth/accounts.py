"""Accounts: Register, GetCurrentUser, the admin RPCs and the creation of admins."""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from auth import apikeys, paging, refresh, users, validation
from auth.core import Core
from auth.models import Page, User
from auth.passwords import policy_violations
from kiln.common import errors, principal
from kiln.common.principal import Principal, Role

log = structlog.get_logger("auth.accounts")


@dataclasses.dataclass(frozen=True)
class UserChanges:
    """The fields an admin changes; None means "not in the update mask"."""

    display_name: str | None = None
    role: Role | None = None
    active: bool | None = None


async def register(
    core: Core, email: str, password: str, display_name: str, role: Role = Role.USER
) -> User:
    """Creates an active account; ALREADY_EXISTS when the email is taken."""
    email = validation.normalise_email(email)
    display_name = display_name.strip()
    validation.raise_if(
        validation.email_violations("email", email)
        + policy_violations("password", password, email)
        + validation.name_violations("display_name", display_name)
    )
    encoded = await core.hasher.hash(password)
    async with core.engine.begin() as conn:
        user = await users.insert(
            conn,
            email=email,
            display_name=display_name,
            password_hash=encoded,
            role=role,
            now=core.clock(),
        )
    log.info("user_registered", user_id=str(user.id), role=role.value)
    return user


async def current_user(core: Core, caller: Principal) -> User:
    """The caller's account as stored now."""
    user_id = validation.parse_id("sub", caller.user_id)
    async with core.engine.connect() as conn:
        user = await users.get(conn, user_id)
    if user is None:
        raise errors.NotFound("user", caller.user_id)
    return user


async def require_admin(core: Core) -> Principal:
    """The caller, who must hold an admin token *and* still be an active admin now.

    Other services trust the token's role until it expires; here the database is at hand,
    so a demoted or deactivated admin loses the admin RPCs at once.
    """
    caller = principal.require_admin()
    async with core.engine.connect() as conn:
        user = await users.get(conn, validation.parse_id("sub", caller.user_id))
    if user is None or not user.active:
        raise errors.Unauthenticated("the account no longer exists or is deactivated")
    if user.role is not Role.ADMIN:
        raise errors.PermissionDenied("this call needs the admin role")
    return caller


async def list_users(core: Core, size: int, token: str, search: str) -> Page[User]:
    """A page of users, newest first, matching `search` in email or display name."""
    await require_admin(core)
    limit = paging.page_size(size)
    search = search.strip()
    validation.raise_if(validation.search_violations("search", search))
    query = f"users:{search.lower()}"
    after = paging.decode(token, query)
    async with core.engine.connect() as conn:
        found = await users.page(conn, search=search, after=after, limit=limit + 1)
    items = found[:limit]
    next_token = ""
    if len(found) > limit:
        last = items[-1]
        next_token = paging.encode(paging.Cursor(last.create_time, last.id), query)
    return Page(items, next_token)


async def get_user(core: Core, user_id: str) -> User:
    """One user; NOT_FOUND when there is none."""
    await require_admin(core)
    parsed = validation.parse_id("id", user_id)
    async with core.engine.connect() as conn:
        user = await users.get(conn, parsed)
    if user is None:
        raise errors.NotFound("user", user_id)
    return user


async def update_user(core: Core, user_id: str, changes: UserChanges) -> User:
    """Applies `changes`. Deactivating revokes the user's refresh tokens and API keys in the
    same transaction; their access tokens keep working until they expire."""
    caller = await require_admin(core)
    parsed = validation.parse_id("user.id", user_id)
    values: dict[str, Any] = {}
    if changes.display_name is not None:
        name = changes.display_name.strip()
        validation.raise_if(validation.name_violations("user.display_name", name))
        values["display_name"] = name
    if changes.role is not None:
        values["role"] = changes.role.value
    if changes.active is not None:
        values["active"] = changes.active
    if str(parsed) == caller.user_id and (changes.active is False or changes.role is Role.USER):
        # Keeps at least the caller as an admin: nobody locks the last admin out by mistake.
        raise errors.FailedPrecondition("admins cannot demote or deactivate themselves")
    now = core.clock()
    async with core.engine.begin() as conn:
        before = await users.get(conn, parsed, lock=True)
        if before is None:
            raise errors.NotFound("user", user_id)
        after = await users.update(conn, parsed, values, now) if values else before
        if after is None:
            raise errors.NotFound("user", user_id)
        if before.active and not after.active:
            tokens = await refresh.revoke_user(conn, parsed, now)
            keys = await apikeys.revoke_user(conn, parsed, now)
            log.info("user_deactivated", user_id=str(parsed), refresh_tokens_revoked=tokens,
                     api_keys_revoked=keys)  # fmt: skip
    log.info("user_updated", user_id=str(parsed), fields=sorted(values), by=caller.user_id)
    return after


async def ensure_admin(core: Core, email: str, password: str, display_name: str) -> User | None:
    """Creates an admin unless the email is registered (an existing account is never
    promoted: someone else may have registered it). Returns the new admin, or None."""
    try:
        return await register(core, email, password, display_name, role=Role.ADMIN)
    except errors.AlreadyExists:
        log.warning("bootstrap_admin_exists")
        return None
