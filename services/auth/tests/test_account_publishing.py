"""Auth publishes account states to the auth_accounts bucket: after a demotion, a
deactivation and a Logout of all sessions, at start, and once NATS comes back after auth
started without it (Login works meanwhile). Real NATS and PostgreSQL, auth on port 0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2
from nats.js import errors as js_errors

from auth.testing import AuthServer, bearer, make_config, start_server, stop_server
from kiln.auth.v1 import auth_pb2
from kiln.common import bus, jetstream
from kiln.common.account_states import AccountState
from kiln.common.principal import Role
from kiln.common.settings import NatsSettings
from kiln.common.testing import NatsServer


async def bucket_state(nats_url: str, user_id: str) -> AccountState | None:
    """The state the bucket holds for `user_id` now, or None."""
    nc = await jetstream.connect(NatsSettings(nats_url=nats_url), "test-reader")
    try:
        kv = await nc.jetstream().key_value(bus.ACCOUNTS_BUCKET)
        entry = await kv.get(user_id)
    except (js_errors.BucketNotFoundError, js_errors.KeyNotFoundError):
        return None  # not written yet: keep polling
    finally:
        await nc.close()
    return AccountState.decode(entry.value) if entry.value else None


async def eventually(
    probe: Callable[[], Awaitable[AccountState | None]],
    check: Callable[[AccountState | None], bool],
    seconds: float = 15.0,
) -> AccountState | None:
    """Polls `probe` until `check` holds for its value; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"last value: {value}"
        await asyncio.sleep(0.1)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_changes_are_published_and_login_works_without_nats(
    migrated_database: str, private_nats: NatsServer
) -> None:
    """Auth starts and serves Login while NATS is down; when NATS comes up every account is
    written; then a demotion, a deactivation and a Logout(all_sessions) each reach the
    bucket within seconds, with tokens_not_before after the moment of the change; a sign-in
    right after the Logout works at once."""
    url = private_nats.url
    private_nats.stop()
    auth: AuthServer = await start_server(
        make_config(migrated_database, NATS_URL=url, AUTH_ACCOUNTS_RESYNC_SECONDS="3600")
    )
    try:
        user = await auth.account()
        admin = await auth.admin()
        assert (await auth.login(user.email)).user.id == user.user.id  # NATS is still down

        await asyncio.to_thread(private_nats.start)
        await eventually(
            lambda: bucket_state(url, user.user.id), lambda s: s == AccountState(Role.USER, True)
        )

        other_admin = await auth.admin()
        await auth.stub.UpdateUser(
            auth_pb2.UpdateUserRequest(
                user=auth_pb2.User(id=other_admin.user.id, role=auth_pb2.ROLE_USER),
                update_mask=mask("role"),
            ),
            metadata=admin.metadata,
        )
        await eventually(
            lambda: bucket_state(url, other_admin.user.id),
            lambda s: s is not None and s.role is Role.USER and s.active,
        )

        before = int(time.time())
        await auth.stub.Logout(auth_pb2.LogoutRequest(all_sessions=True), metadata=user.metadata)
        state = await eventually(
            lambda: bucket_state(url, user.user.id),
            lambda s: s is not None and s.tokens_not_before > before,
        )
        assert state is not None and state.active
        # The caller's own token is refused by auth too, from its copy of the bucket.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=user.metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Its refresh tokens are gone too.
        with pytest.raises(grpc.aio.AioRpcError) as refreshed:
            await auth.stub.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=user.tokens.refresh_token)
            )
        assert refreshed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Signing in again right away (even within the same second) starts a working session.
        fresh = await auth.login(user.email)
        me = await auth.stub.GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=bearer(fresh.tokens.access_token)
        )
        assert me.user.id == user.user.id

        await auth.stub.UpdateUser(
            auth_pb2.UpdateUserRequest(
                user=auth_pb2.User(id=other_admin.user.id, active=False),
                update_mask=mask("active"),
            ),
            metadata=admin.metadata,
        )
        await eventually(
            lambda: bucket_state(url, other_admin.user.id),
            lambda s: s is not None and not s.active and s.tokens_not_before > before,
        )
    finally:
        await stop_server(auth)


async def test_logout_without_a_token_or_all_sessions_names_the_field(
    auth: AuthServer,
) -> None:
    """Logout with neither a refresh token nor all_sessions is INVALID_ARGUMENT on
    refresh_token."""
    account = await auth.account()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.stub.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "all_sessions" in (caught.value.details() or "")


async def test_periodic_resync_repairs_a_lost_record(
    migrated_database: str, private_nats: NatsServer
) -> None:
    """A record that vanished from the bucket (a lost write, an operator's purge) is written
    again from PostgreSQL by the next periodic resync."""
    auth = await start_server(
        make_config(
            migrated_database, NATS_URL=private_nats.url, AUTH_ACCOUNTS_RESYNC_SECONDS="0.5"
        )
    )
    try:
        user = await auth.account()
        expected = AccountState(Role.USER, True)
        await eventually(
            lambda: bucket_state(private_nats.url, user.user.id), lambda s: s == expected
        )
        nc = await jetstream.connect(NatsSettings(nats_url=private_nats.url), "test-operator")
        try:
            kv = await nc.jetstream().key_value(bus.ACCOUNTS_BUCKET)
            await kv.delete(user.user.id)
        finally:
            await nc.close()
        await eventually(
            lambda: bucket_state(private_nats.url, user.user.id), lambda s: s == expected
        )
    finally:
        await stop_server(auth)
