"""Signing in and out: Login (password or API key), RefreshToken, Logout, ChangePassword.

Wrong email and wrong password fail alike: same code, same message, and (the unknown email
is checked against a dummy hash) about the same time. Nothing here logs a secret.
"""

from __future__ import annotations

import structlog

from auth import apikey_store, refresh_token_store, throttle, user_store, validation
from auth.core import Core
from auth.models import TokenPair, User
from auth.passwords import MAX_LENGTH, policy_violations
from kiln.common import errors, ids
from kiln.common.principal import Principal, Role

log = structlog.get_logger("auth.sessions")

WRONG_CREDENTIALS = "the email or password is wrong"
BAD_API_KEY = "the API key is invalid, expired or revoked"
BAD_REFRESH_TOKEN = "the refresh token is invalid, expired or revoked"  # noqa: S105 - a message
_ROLE_RANK = {Role.USER: 0, Role.ADMIN: 1}


def _throttled(retry_after: float) -> errors.ResourceExhausted:
    return errors.ResourceExhausted(
        "too many failed sign-in attempts; try again later",
        reason="LOGIN_THROTTLED",
        retry_after=retry_after,
    )


async def login_with_password(
    core: Core, email: str, password: str, address: str | None
) -> tuple[TokenPair, User]:
    """Tokens for the account, when the password is right and the account active."""
    email = validation.normalise_email(email)
    violations = validation.email_violations("password.email", email)
    if not password:
        violations.append(errors.FieldViolation("password.password", "is required"))
    elif len(password) > MAX_LENGTH:
        violations.append(
            errors.FieldViolation("password.password", f"must be at most {MAX_LENGTH} characters")
        )
    validation.raise_if(violations)

    now = core.clock()
    limits = core.throttle.limits
    account_key = throttle.account_key(email)
    address_key = throttle.address_key(address) if address else None
    counted = {account_key: limits.per_account}
    if address_key:
        counted[address_key] = limits.per_address
    async with core.engine.begin() as conn:
        retry_after = await core.throttle.begin_attempt(conn, counted, now)
    if retry_after is not None:
        log.info("login_throttled", method="password")
        raise _throttled(retry_after)

    async with core.engine.connect() as conn:
        found = await user_store.get_with_hash(conn, email)
    user, encoded = found if found else (None, None)
    matched = await core.hasher.verify(encoded, password)
    if user is None or encoded is None or not matched or not user.active:
        reason = (
            "unknown_email" if user is None else "wrong_password" if not matched else "inactive"
        )
        log.info("login_failed", method="password", reason=reason)
        raise errors.Unauthenticated(WRONG_CREDENTIALS, reason="WRONG_CREDENTIALS")

    rehashed = await core.hasher.hash(password) if core.hasher.needs_rehash(encoded) else None
    now = core.clock()
    async with core.engine.begin() as conn:
        await core.throttle.succeeded(conn, account=account_key, address=address_key)
        if rehashed is not None:
            await user_store.set_password_hash(conn, user.id, rehashed, now)
        new_refresh = await refresh_token_store.issue(conn, user.id, now, core.refresh_ttl)
    access = core.issuer.issue(user.id, user.email, user.role, now, user.tokens_not_before)
    log.info("login_succeeded", method="password", user_id=str(user.id),
             rehashed=rehashed is not None)  # fmt: skip
    pair = TokenPair(access.token, access.expire_time, new_refresh.token, new_refresh.expire_time)
    return pair, user


async def login_with_api_key(core: Core, key: str, address: str | None) -> tuple[TokenPair, User]:
    """A short-lived access token (no refresh token) for a live API key of an active user."""
    if not key:
        raise errors.InvalidArgument.field("api_key.api_key", "is required")
    now = core.clock()
    address_key = throttle.address_key(address) if address else None
    if address_key:
        async with core.engine.begin() as conn:
            retry_after = await core.throttle.begin_attempt(
                conn, {address_key: core.throttle.limits.per_address}, now
            )
        if retry_after is not None:
            log.info("login_throttled", method="api_key")
            raise _throttled(retry_after)

    async with core.engine.begin() as conn:
        api_key = (
            await apikey_store.find_by_key(conn, key) if apikey_store.looks_like_key(key) else None
        )
        user = await user_store.get(conn, api_key.user_id) if api_key else None
        usable = (
            api_key is not None
            and api_key.revoke_time is None
            and (api_key.expire_time is None or api_key.expire_time > now)
            and user is not None
            and user.active
        )
        if usable and api_key is not None and user is not None:
            await apikey_store.touch(conn, api_key.id, now)
            await core.throttle.succeeded(conn, account=None, address=address_key)
    if not usable or api_key is None or user is None:
        log.info("login_failed", method="api_key",
                 key_id=str(api_key.id) if api_key else None)  # fmt: skip
        raise errors.Unauthenticated(BAD_API_KEY, reason="INVALID_API_KEY")

    # A key never grants more than its user has now: demoting the user demotes the key.
    role = min(api_key.role, user.role, key=_ROLE_RANK.__getitem__)
    access = core.issuer.issue(user.id, user.email, role, now, user.tokens_not_before)
    log.info("login_succeeded", method="api_key", user_id=str(user.id), key_id=str(api_key.id))
    return TokenPair(access.token, access.expire_time), user


async def rotate(core: Core, token: str) -> TokenPair:
    """Spends `token` and returns a new pair in its family; a reused token kills the family."""
    if not token:
        raise errors.InvalidArgument.field("refresh_token", "is required")
    now = core.clock()
    async with core.engine.begin() as conn:
        presented = await refresh_token_store.present(conn, token, now)
        outcome = presented.outcome
        user = None
        new_refresh = None
        if presented.family_id is not None and outcome is refresh_token_store.Outcome.REUSED:
            revoked = await refresh_token_store.revoke_family(conn, presented.family_id, now)
            log.warning("refresh_token_reuse_detected", user_id=str(presented.user_id),
                        family_id=str(presented.family_id), revoked=revoked)  # fmt: skip
        elif outcome is refresh_token_store.Outcome.VALID and presented.id and presented.user_id:
            user = await user_store.get(conn, presented.user_id)
            if user is not None and user.active:
                await refresh_token_store.mark_spent(conn, presented.id, now)
                new_refresh = await refresh_token_store.issue(
                    conn, user.id, now, core.refresh_ttl, presented.family_id
                )
    if user is None or new_refresh is None:
        log.info("refresh_failed", outcome=outcome.value)
        raise errors.Unauthenticated(BAD_REFRESH_TOKEN, reason="INVALID_REFRESH_TOKEN")
    access = core.issuer.issue(user.id, user.email, user.role, now, user.tokens_not_before)
    return TokenPair(access.token, access.expire_time, new_refresh.token, new_refresh.expire_time)


async def logout(core: Core, caller: Principal, token: str, all_sessions: bool = False) -> None:
    """Revokes the caller's refresh token (its whole rotation chain); a token that is not
    the caller's is left alone without saying so. With `all_sessions`, revokes every refresh
    token of the caller and refuses, in every service, every access token issued to them
    before now."""
    if all_sessions:
        await logout_everywhere(core, caller)
        return
    if not token:
        raise errors.InvalidArgument.field(
            "refresh_token", "is required unless all_sessions is set"
        )
    now = core.clock()
    async with core.engine.begin() as conn:
        presented = await refresh_token_store.present(conn, token, now)
        if presented.family_id is not None and str(presented.user_id) == caller.user_id:
            await refresh_token_store.revoke_family(conn, presented.family_id, now)
            log.info("logged_out", user_id=caller.user_id)


async def logout_everywhere(core: Core, caller: Principal) -> None:
    """Ends every session of the caller: refresh tokens revoked, access tokens refused."""
    user_id = ids.parse_id("sub", caller.user_id)
    now = core.clock()
    async with core.engine.begin() as conn:
        revoked = await refresh_token_store.revoke_user(conn, user_id, now)
        await user_store.refuse_tokens_before(conn, user_id, now)
    core.account_changed(user_id)
    log.info("logged_out_everywhere", user_id=caller.user_id, refresh_tokens_revoked=revoked)


async def change_password(core: Core, caller: Principal, old: str, new: str) -> None:
    """Replaces the caller's password after checking the old one, and revokes every refresh
    token they have (all their other sessions end at their access token's expiry)."""
    user_id = ids.parse_id("sub", caller.user_id)
    async with core.engine.connect() as conn:
        user = await user_store.get(conn, user_id)
        encoded = await user_store.password_hash(conn, user_id)
    if user is None or encoded is None or not user.active:
        raise errors.Unauthenticated(
            "the account no longer exists or is deactivated", reason="ACCOUNT_DEACTIVATED"
        )
    violations = [] if old else [errors.FieldViolation("old_password", "is required")]
    if len(old) > MAX_LENGTH:
        violations.append(
            errors.FieldViolation("old_password", f"must be at most {MAX_LENGTH} characters")
        )
    violations += policy_violations("new_password", new, user.email)
    validation.raise_if(violations)

    account_key = throttle.account_key(user.email)
    now = core.clock()
    async with core.engine.begin() as conn:
        retry_after = await core.throttle.begin_attempt(
            conn, {account_key: core.throttle.limits.per_account}, now
        )
    if retry_after is not None:
        raise _throttled(retry_after)
    if not await core.hasher.verify(encoded, old):
        log.info("password_change_refused", user_id=str(user_id))
        raise errors.InvalidArgument.field("old_password", "does not match the current password")
    rehashed = await core.hasher.hash(new)
    now = core.clock()
    async with core.engine.begin() as conn:
        await user_store.set_password_hash(conn, user_id, rehashed, now)
        revoked = await refresh_token_store.revoke_user(conn, user_id, now)
        await core.throttle.succeeded(conn, account=account_key, address=None)
    log.info("password_changed", user_id=str(user_id), refresh_tokens_revoked=revoked)
