"""Accounts: Register, GetCurrentUser, the admin RPCs and the creation of admins."""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from auth import apikey_store, refresh_token_store, throttle, user_store, validation
from auth.core import Core
from auth.models import Page, User
from auth.passwords import policy_violations
from kiln.common import errors, ids, paging, principal
from kiln.common.principal import Principal, Role

_USERS_DEFAULT_PAGE = 100

log = structlog.get_logger("auth.accounts")


@dataclasses.dataclass(frozen=True)
class UserChanges:
    """The fields an admin changes; None means "not in the update mask"."""

    display_name: str | None = None
    role: Role | None = None
    active: bool | None = None


REGISTRATION_CLOSED = (
    "self-registration is closed on this server; ask an administrator to create your account"
)


async def register(
    core: Core, email: str, password: str, display_name: str, address: str | None
) -> User:
    """Self-registration of a `user` account, throttled per client address.

    PERMISSION_DENIED when the operator closed it (AUTH_SELF_REGISTRATION=false);
    RESOURCE_EXHAUSTED past the per-address limit; ALREADY_EXISTS when the email is taken.
    """
    if not core.self_registration:
        raise errors.PermissionDenied(REGISTRATION_CLOSED, reason="REGISTRATION_CLOSED")
    if address is not None:
        limit = core.throttle.limits.registrations_per_address
        counted = {throttle.registration_key(address): limit}
        async with core.engine.begin() as conn:
            retry_after = await core.throttle.begin_attempt(conn, counted, core.clock())
        if retry_after is not None:
            log.info("register_throttled")
            raise errors.ResourceExhausted(
                "too many registrations from this address; try again later",
                reason="REGISTRATION_THROTTLED",
                retry_after=retry_after,
            )
    return await create_account(core, email, password, display_name, Role.USER)


async def create_user(
    core: Core, email: str, password: str, display_name: str, role: Role | None
) -> User:
    """An admin creates an account with `role` (default `user`); works with
    self-registration closed."""
    caller = await require_admin(core)
    user = await create_account(core, email, password, display_name, role or Role.USER)
    log.info("user_created_by_admin", user_id=str(user.id), by=caller.user_id)
    return user


def _checked_fields(email: str, password: str, display_name: str) -> tuple[str, str]:
    email = validation.normalise_email(email)
    display_name = display_name.strip()
    validation.raise_if(
        validation.email_violations("email", email)
        + policy_violations("password", password, email)
        + validation.name_violations("display_name", display_name)
    )
    return email, display_name


async def create_account(
    core: Core, email: str, password: str, display_name: str, role: Role
) -> User:
    """Creates an active account; ALREADY_EXISTS when the email is taken.

    The email is looked up before the password is hashed, so a taken email costs no
    argon2 work (the answer is ALREADY_EXISTS either way, so this reveals nothing new), and
    the hash waits for a slot of the bounded gate, so registrations cannot crowd out Login.
    """
    email, display_name = _checked_fields(email, password, display_name)
    async with core.engine.connect() as conn:
        taken = await user_store.email_taken(conn, email)
    if taken:
        raise errors.AlreadyExists(user_store.EMAIL_TAKEN, reason="EMAIL_TAKEN")
    encoded = await core.new_account_hashes.hash(core.hasher, password)
    async with core.engine.begin() as conn:
        user = await user_store.insert(
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
    user_id = ids.parse_id("sub", caller.user_id)
    async with core.engine.connect() as conn:
        user = await user_store.get(conn, user_id)
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
        user = await user_store.get(conn, ids.parse_id("sub", caller.user_id))
    if user is None or not user.active:
        raise errors.Unauthenticated(
            "the account no longer exists or is deactivated", reason="ACCOUNT_DEACTIVATED"
        )
    if user.role is not Role.ADMIN:
        raise errors.PermissionDenied(
            "this call needs the admin role", reason="ADMIN_ROLE_REQUIRED"
        )
    return caller


async def list_users(core: Core, size: int, token: str, search: str) -> Page[User]:
    """A page of users, newest first, matching `search` in email or display name."""
    await require_admin(core)
    limit = paging.page_size(size, _USERS_DEFAULT_PAGE)
    search = search.strip()
    validation.raise_if(validation.search_violations("search", search))
    query = f"users:{search.lower()}"
    filters = paging.fingerprint(query)
    after = paging.Cursor.after(token, filters)
    async with core.engine.connect() as conn:
        found = await user_store.page(conn, search=search, after=after, limit=limit + 1)
    return Page(*paging.cut(found, limit, filters, paging.keyset_position))


async def get_user(core: Core, user_id: str) -> User:
    """One user; NOT_FOUND when there is none."""
    await require_admin(core)
    parsed = ids.parse_id("id", user_id)
    async with core.engine.connect() as conn:
        user = await user_store.get(conn, parsed)
    if user is None:
        raise errors.NotFound("user", user_id)
    return user


async def update_user(core: Core, user_id: str, changes: UserChanges) -> User:
    """Applies `changes`. Deactivating revokes the user's refresh tokens and API keys in the
    same transaction; a new role or active flag is then published, so every service refuses
    the lost powers of tokens already issued within seconds."""
    caller = await require_admin(core)
    parsed = ids.parse_id("user.id", user_id)
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
        raise errors.FailedPrecondition(
            "admins cannot demote or deactivate themselves", reason="SELF_DEMOTION"
        )
    now = core.clock()
    async with core.engine.begin() as conn:
        before = await user_store.get(conn, parsed, lock=True)
        if before is None:
            raise errors.NotFound("user", user_id)
        after = await user_store.update(conn, parsed, values, now) if values else before
        if after is None:
            raise errors.NotFound("user", user_id)
        if before.active and not after.active:
            tokens = await refresh_token_store.revoke_user(conn, parsed, now)
            keys = await apikey_store.revoke_user(conn, parsed, now)
            # Reactivating later must not bring the old access tokens back to life.
            await user_store.refuse_tokens_before(conn, parsed, now)
            log.info("user_deactivated", user_id=str(parsed), refresh_tokens_revoked=tokens,
                     api_keys_revoked=keys)  # fmt: skip
    if (before.role, before.active) != (after.role, after.active):
        core.account_changed(parsed)
    log.info("user_updated", user_id=str(parsed), fields=sorted(values), by=caller.user_id)
    return after


async def ensure_admin(core: Core, email: str, password: str, display_name: str) -> User | None:
    """Creates an admin unless the email is registered (an existing account is never
    promoted: someone else may have registered it). Returns the new admin, or None."""
    try:
        return await create_account(core, email, password, display_name, Role.ADMIN)
    except errors.AlreadyExists:
        log.warning("bootstrap_admin_exists")
        return None
