"""No secret reaches a log line: every line the auth service writes during a full session
(JSON, as in production, at debug level) is captured and searched for each secret."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2

from auth.tables import api_keys, refresh_tokens, users
from auth.testing import (
    PASSWORD,
    SIGNING_KEY,
    bearer,
    make_config,
    new_email,
    pem,
    start_server,
    stop_server,
)
from kiln.auth.v1 import auth_pb2
from kiln.common.testing.logs import captured_json_logs


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the process logs, rendered exactly as the production JSON handler does."""
    with captured_json_logs("auth") as buffer:
        yield buffer


async def test_secrets_never_reach_the_logs(
    migrated_database: str, captured_logs: io.StringIO
) -> None:
    """Passwords (right, wrong, new, bootstrap), access and refresh tokens, API key secrets,
    password hashes, token and key hashes, and the signing key are absent from every line
    logged through a session that exercises every RPC, its failures included."""
    bootstrap_password = "bootstrap admin secret 42"
    admin_email = new_email()
    server = await start_server(
        make_config(
            migrated_database,
            AUTH_BOOTSTRAP_ADMIN_EMAIL=admin_email,
            AUTH_BOOTSTRAP_ADMIN_PASSWORD=bootstrap_password,
        )
    )
    secrets: dict[str, str] = {"password": PASSWORD, "bootstrap password": bootstrap_password}
    stub = server.stub
    try:
        admin = (await server.login(admin_email, bootstrap_password)).tokens
        email = new_email()
        user = await server.register(email)
        tokens = (await server.login(email)).tokens
        wrong = "wrong-password-that-must-not-leak"
        secrets["wrong password"] = wrong
        for attempt in (server.login(email, wrong), server.login(new_email(), wrong)):
            await _fails(attempt)
        rotated = (
            await stub.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token)
            )
        ).tokens
        await _fails(
            stub.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token))
        )
        relogin = (await server.login(email)).tokens
        await stub.Logout(
            auth_pb2.LogoutRequest(refresh_token=relogin.refresh_token),
            metadata=bearer(relogin.access_token),
        )
        new_password = "the new password nobody may log"
        secrets["new password"] = new_password
        await _fails(
            stub.ChangePassword(
                auth_pb2.ChangePasswordRequest(old_password=wrong, new_password=new_password),
                metadata=bearer(relogin.access_token),
            )
        )
        await stub.ChangePassword(
            auth_pb2.ChangePasswordRequest(old_password=PASSWORD, new_password=new_password),
            metadata=bearer(relogin.access_token),
        )
        key = await stub.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(name="robot"), metadata=bearer(relogin.access_token)
        )
        key_tokens = (
            await stub.Login(
                auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=key.secret))
            )
        ).tokens
        await _fails(
            stub.Login(
                auth_pb2.LoginRequest(
                    api_key=auth_pb2.ApiKeyCredential(api_key=key.secret[:-4] + "AAAA")
                )
            )
        )
        await _fails(
            stub.GetCurrentUser(
                auth_pb2.GetCurrentUserRequest(), metadata=bearer(tokens.access_token + "x")
            )
        )
        await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=bearer(admin.access_token))
        await stub.RevokeApiKey(
            auth_pb2.RevokeApiKeyRequest(id=key.api_key.id), metadata=bearer(admin.access_token)
        )
        await stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=bearer(admin.access_token))
        await stub.GetUser(auth_pb2.GetUserRequest(id=user.id), metadata=bearer(admin.access_token))
        await stub.UpdateUser(
            auth_pb2.UpdateUserRequest(
                user=auth_pb2.User(id=user.id, active=False),
                update_mask=field_mask_pb2.FieldMask(paths=["active"]),
            ),
            metadata=bearer(admin.access_token),
        )
        await stub.GetJwks(auth_pb2.GetJwksRequest())

        for name, pair in (("user", tokens), ("rotated", rotated), ("relogin", relogin),
                           ("admin", admin), ("api key", key_tokens)):  # fmt: skip
            secrets[f"{name} access token"] = pair.access_token
            secrets[f"{name} access token signature"] = pair.access_token.rsplit(".", 1)[1]
            if pair.refresh_token:
                secrets[f"{name} refresh token"] = pair.refresh_token
        secrets["api key"] = key.secret
        secrets["api key secret part"] = key.secret.split("_", 2)[2]
        secrets["signing key"] = pem(SIGNING_KEY).splitlines()[1]
        async with server.app.engine.connect() as conn:
            for index, stored in enumerate(await conn.scalars(sa.select(users.c.password_hash))):
                secrets[f"password hash {index}"] = stored
                secrets[f"password hash digest {index}"] = stored.rsplit("$", 1)[1]
            for table, column in ((refresh_tokens, "token_hash"), (api_keys, "secret_hash")):
                for index, digest in enumerate(await conn.scalars(sa.select(table.c[column]))):
                    secrets[f"{column} {index} hex"] = digest.hex()
    finally:
        await stop_server(server)

    text = captured_logs.getvalue()
    assert '"event": "rpc_finished"' in text
    for event in ("login_failed", "refresh_token_reuse_detected", "password_changed",
                  "api_key_created", "user_deactivated", "bootstrap_admin_created"):  # fmt: skip
        assert event in text, event
    leaked = [name for name, value in secrets.items() if value and value in text]
    assert leaked == []


async def _fails(call: object) -> None:
    """Awaits a call that must fail (its failure is part of what gets logged)."""
    import grpc  # noqa: PLC0415

    with pytest.raises(grpc.aio.AioRpcError):
        await call  # type: ignore[misc]
