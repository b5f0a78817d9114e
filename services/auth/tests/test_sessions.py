"""Login, RefreshToken, Logout and ChangePassword through the gRPC API."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from auth.testing import (
    PASSWORD,
    AuthServer,
    bearer,
    make_config,
    new_email,
    start_server,
    stop_server,
)
from kiln.auth.v1 import auth_pb2


async def refresh(auth: AuthServer, token: str) -> auth_pb2.TokenPair:
    response = await auth.stub.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=token))
    tokens: auth_pb2.TokenPair = response.tokens
    return tokens


async def refused(call: object) -> grpc.aio.AioRpcError:
    """The error a call ended with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_login_returns_access_and_refresh_tokens(auth: AuthServer) -> None:
    """A password login returns the user, an access token and a 30-day refresh token."""
    email = new_email()
    user = await auth.register(email)
    before = time.time()
    response = await auth.login(f" {email.upper()} ")
    assert response.user.id == user.id
    tokens = response.tokens
    assert tokens.access_token and tokens.refresh_token
    assert tokens.token_type == "Bearer"
    lifetime = tokens.refresh_token_expire_time.seconds - before
    assert 30 * 86400 - 5 < lifetime < 30 * 86400 + 5
    assert len(tokens.refresh_token) >= 43  # 256 bits, base64url


async def test_unknown_email_and_wrong_password_look_the_same(auth: AuthServer) -> None:
    """Wrong password and unknown email: both UNAUTHENTICATED with the same message."""
    email = new_email()
    await auth.register(email)
    wrong = await refused(auth.login(email, "wrong password 123"))
    unknown = await refused(auth.login(new_email(), "wrong password 123"))
    assert wrong.code() == unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == unknown.details()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (auth_pb2.LoginRequest(), "credential"),
        (auth_pb2.LoginRequest(password=auth_pb2.PasswordCredential(password=PASSWORD)),
         "password.email"),
        (auth_pb2.LoginRequest(password=auth_pb2.PasswordCredential(email="x", password=PASSWORD)),
         "password.email"),
        (auth_pb2.LoginRequest(password=auth_pb2.PasswordCredential(email="a@example.com")),
         "password.password"),
        (auth_pb2.LoginRequest(password=auth_pb2.PasswordCredential(
            email="a@example.com", password="p" * 1025)), "password.password"),
        (auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential()), "api_key.api_key"),
    ],
)  # fmt: skip
async def test_bad_login_is_invalid_argument_naming_the_field(
    auth: AuthServer, request_: auth_pb2.LoginRequest, field: str
) -> None:
    """No credential, empty or malformed email, empty or oversized password, empty API key:
    INVALID_ARGUMENT naming the field."""
    error = await refused(auth.stub.Login(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


async def test_refresh_rotates_the_pair(auth: AuthServer) -> None:
    """RefreshToken returns a new access and refresh token; the new refresh token works."""
    account = await auth.account()
    first = await refresh(auth, account.tokens.refresh_token)
    assert first.refresh_token != account.tokens.refresh_token
    assert first.access_token != account.tokens.access_token
    second = await refresh(auth, first.refresh_token)
    me = await auth.stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=bearer(second.access_token)
    )
    assert me.user.id == account.user.id


async def test_reusing_a_spent_refresh_token_revokes_the_family(auth: AuthServer) -> None:
    """Presenting a spent refresh token again is UNAUTHENTICATED and revokes its whole
    family: the token issued by the rotation stops working too (theft detection). Other
    sessions of the same user are untouched."""
    account = await auth.account()
    other_session = (await auth.login(account.email)).tokens
    rotated = await refresh(auth, account.tokens.refresh_token)
    reuse = await refused(refresh(auth, account.tokens.refresh_token))
    assert reuse.code() == grpc.StatusCode.UNAUTHENTICATED
    after = await refused(refresh(auth, rotated.refresh_token))
    assert after.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await refresh(auth, other_session.refresh_token)).access_token


async def test_racing_refreshes_of_one_token_leave_at_most_one_winner(auth: AuthServer) -> None:
    """Two clients presenting the same refresh token at once: at most one rotation succeeds
    (the row lock serialises them), and the loser's reuse revokes the family."""
    account = await auth.account()
    results = await asyncio.gather(
        *(refresh(auth, account.tokens.refresh_token) for _ in range(5)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, auth_pb2.TokenPair)]
    assert len(winners) <= 1
    assert all(
        r.code() == grpc.StatusCode.UNAUTHENTICATED
        for r in results
        if isinstance(r, grpc.aio.AioRpcError)
    )
    for winner in winners:
        assert (await refused(refresh(auth, winner.refresh_token))).code() == (
            grpc.StatusCode.UNAUTHENTICATED
        )


async def test_bad_refresh_tokens(auth: AuthServer) -> None:
    """An empty refresh token is INVALID_ARGUMENT; an unknown one UNAUTHENTICATED."""
    empty = await refused(refresh(auth, ""))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown = await refused(refresh(auth, "not-a-refresh-token"))
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_refresh_token_is_unauthenticated(auth_database: str) -> None:
    """A refresh token past its lifetime (AUTH_REFRESH_TOKEN_TTL_SECONDS) is refused."""
    server = await start_server(make_config(auth_database, AUTH_REFRESH_TOKEN_TTL_SECONDS="1"))
    try:
        account = await server.account()
        await asyncio.sleep(1.2)
        error = await refused(refresh(server, account.tokens.refresh_token))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await stop_server(server)


async def test_logout_revokes_the_refresh_token(auth: AuthServer) -> None:
    """Logout needs an access token, revokes the given refresh token, and leaves the
    caller's other sessions alone; an empty token is INVALID_ARGUMENT."""
    account = await auth.account()
    other = (await auth.login(account.email)).tokens
    request = auth_pb2.LogoutRequest(refresh_token=account.tokens.refresh_token)
    assert (await refused(auth.stub.Logout(request))).code() == grpc.StatusCode.UNAUTHENTICATED
    await auth.stub.Logout(request, metadata=account.metadata)
    error = await refused(refresh(auth, account.tokens.refresh_token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await refresh(auth, other.refresh_token)).access_token
    empty = await refused(auth.stub.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_logout_cannot_revoke_someone_elses_token(auth: AuthServer) -> None:
    """Logout with another user's refresh token succeeds silently and revokes nothing."""
    victim = await auth.account()
    attacker = await auth.account()
    await auth.stub.Logout(
        auth_pb2.LogoutRequest(refresh_token=victim.tokens.refresh_token),
        metadata=attacker.metadata,
    )
    assert (await refresh(auth, victim.tokens.refresh_token)).access_token


async def test_change_password(auth: AuthServer) -> None:
    """ChangePassword checks the old password, replaces it, and revokes every refresh token
    of the user; the new password signs in and the old one no longer does."""
    account = await auth.account()
    other = (await auth.login(account.email)).tokens
    new_password = "a brand new passphrase"
    await auth.stub.ChangePassword(
        auth_pb2.ChangePasswordRequest(old_password=PASSWORD, new_password=new_password),
        metadata=account.metadata,
    )
    for token in (account.tokens.refresh_token, other.refresh_token):
        assert (await refused(refresh(auth, token))).code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await refused(auth.login(account.email))).code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.login(account.email, new_password)).tokens.access_token


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("", "a brand new passphrase", "old_password"),
        ("wrong old password", "a brand new passphrase", "old_password"),
        (PASSWORD, "short", "new_password"),
        (PASSWORD, "", "new_password"),
        (PASSWORD, "{email}", "new_password"),
    ],
)
async def test_bad_change_password(auth: AuthServer, old: str, new: str, field: str) -> None:
    """Missing or wrong old password, or a new password that breaks the policy:
    INVALID_ARGUMENT naming the field, and the password stays as it was."""
    account = await auth.account()
    new = account.email if new == "{email}" else new
    error = await refused(
        auth.stub.ChangePassword(
            auth_pb2.ChangePasswordRequest(old_password=old, new_password=new),
            metadata=account.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert (await auth.login(account.email)).tokens.access_token


async def test_change_password_needs_a_token(auth: AuthServer) -> None:
    """ChangePassword without an access token is UNAUTHENTICATED."""
    error = await refused(
        auth.stub.ChangePassword(
            auth_pb2.ChangePasswordRequest(old_password=PASSWORD, new_password=PASSWORD + "x")
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
