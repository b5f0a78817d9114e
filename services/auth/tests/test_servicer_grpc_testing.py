"""AuthService's servicer under grpc_testing's in-process server: the servicer and its use
cases against the real PostgreSQL, with no socket and no interceptors (see
kiln.common.testing.servicers). Proto in, proto and status out, in about a second."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc_testing
import pytest

from auth import app
from auth.testing import make_config
from kiln.auth.v1 import auth_pb2
from kiln.common.principal import Principal, Role
from kiln.common.testing import statuses
from kiln.common.testing.servicers import SyncServicer

SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def built(migrated_database: str) -> AsyncIterator[app.AuthApp]:
    """An auth service built on a migrated database, not started."""
    service = await app.build(make_config(migrated_database))
    try:
        yield service
    finally:
        await service.close()


def _server(built: app.AuthApp, caller: Principal | None = None) -> Any:
    servicer = SyncServicer(built.servicer, asyncio.get_running_loop(), caller, SERVICE)
    return grpc_testing.server_from_dictionary({SERVICE: servicer}, grpc_testing.strict_real_time())


async def _call(server: Any, method: str, request: Any) -> tuple[Any, Any, grpc.StatusCode, str]:
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], (), request, None)
    result: tuple[Any, Any, grpc.StatusCode, str] = await asyncio.to_thread(rpc.termination)
    return result


def _login(email: str, password: str) -> auth_pb2.LoginRequest:
    credential = auth_pb2.PasswordCredential(email=email, password=password)
    return auth_pb2.LoginRequest(password=credential)


async def test_register_login_and_current_user(built: app.AuthApp) -> None:
    """Register creates a user; Login with its password returns tokens for that user;
    GetCurrentUser, as that user, returns the same account."""
    public = _server(built)
    email = f"u-{uuid.uuid4().hex[:8]}@example.test"
    registered, _, code, details = await _call(
        public,
        "Register",
        auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="U"),
    )
    assert code == grpc.StatusCode.OK, details
    login = _login(email, PASSWORD)
    signed_in, _, code, details = await _call(public, "Login", login)
    assert code == grpc.StatusCode.OK, details
    assert signed_in.user.id == registered.user.id and signed_in.tokens.access_token
    caller = Principal(user_id=registered.user.id, email=email, role=Role.USER, token_id="t")
    current, _, code, _ = await _call(
        _server(built, caller), "GetCurrentUser", auth_pb2.GetCurrentUserRequest()
    )
    assert code == grpc.StatusCode.OK and current.user.email == email


async def test_register_names_each_bad_field(built: app.AuthApp) -> None:
    """A malformed email, a short password and a missing name are INVALID_ARGUMENT naming
    each field."""
    request = auth_pb2.RegisterRequest(email="not-an-email", password="short")
    _, trailers, code, _ = await _call(_server(built), "Register", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(statuses.violated_fields(trailers)) == ["display_name", "email", "password"]


async def test_wrong_password_is_unauthenticated(built: app.AuthApp) -> None:
    """A wrong password and an unknown email get the same code."""
    public = _server(built)
    email = f"u-{uuid.uuid4().hex[:8]}@example.test"
    await _call(
        public,
        "Register",
        auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="U"),
    )
    codes = []
    for who in (email, "nobody@example.test"):
        codes.append((await _call(public, "Login", _login(who, "wrong pw!")))[2])
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2
