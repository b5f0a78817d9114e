"""Arbitrary text in every string field of every auth RPC: only well-defined codes come
back, never UNKNOWN or INTERNAL, and the server stays healthy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.testing import Account, AuthServer
from kiln.auth.v1 import auth_pb2

# Control characters, NUL, SQL and LIKE metacharacters and long runs are what matter here.
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00@b.co", "%", "_", "'; --", "\\", "x" * 300, " ", "kiln_"]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=1100),
)
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def header(text: str) -> str:
    """`text` cut down to what gRPC lets a client put in a header (it refuses the rest)."""
    return "".join(c for c in text if " " <= c <= "~").strip() or "x"


Build = Callable[[AuthServer, Account, str], Any]

CALLS: dict[str, Build] = {
    "Register/email": lambda a, _u, t: a.stub.Register(
        auth_pb2.RegisterRequest(email=t, password="long enough password", display_name="n")),
    "Register/name": lambda a, _u, t: a.stub.Register(
        auth_pb2.RegisterRequest(email="f@example.com", password="long enough", display_name=t)),
    "Login/email": lambda a, _u, t: a.login(t, "whatever password"),
    "Login/password": lambda a, u, t: a.login(u.email, t),
    "Login/api_key": lambda a, _u, t: a.stub.Login(
        auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=t))),
    "RefreshToken": lambda a, _u, t: a.stub.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=t)),
    "Logout": lambda a, u, t: a.stub.Logout(
        auth_pb2.LogoutRequest(refresh_token=t), metadata=u.metadata),
    "ChangePassword": lambda a, u, t: a.stub.ChangePassword(
        auth_pb2.ChangePasswordRequest(old_password=t, new_password=t), metadata=u.metadata),
    "CreateApiKey/name": lambda a, u, t: a.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(name=t), metadata=u.metadata),
    "CreateApiKey/user_id": lambda a, u, t: a.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(name="k", user_id=t), metadata=u.metadata),
    "ListApiKeys": lambda a, u, t: a.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(page_token=t), metadata=u.metadata),
    "RevokeApiKey": lambda a, u, t: a.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(id=t), metadata=u.metadata),
    "ListUsers/search": lambda a, u, t: a.stub.ListUsers(
        auth_pb2.ListUsersRequest(search=t), metadata=u.metadata),
    "ListUsers/page_token": lambda a, u, t: a.stub.ListUsers(
        auth_pb2.ListUsersRequest(page_token=t), metadata=u.metadata),
    "GetUser": lambda a, u, t: a.stub.GetUser(auth_pb2.GetUserRequest(id=t), metadata=u.metadata),
    "UpdateUser": lambda a, u, t: a.stub.UpdateUser(
        auth_pb2.UpdateUserRequest(user=auth_pb2.User(id=t, display_name=t),
                                   update_mask=field_mask_pb2.FieldMask(paths=[t])),
        metadata=u.metadata),
    "CreateUser": lambda a, u, t: a.stub.CreateUser(
        auth_pb2.CreateUserRequest(email=t, password=t, display_name=t), metadata=u.metadata),
    "GetCurrentUser/token": lambda a, _u, t: a.stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {header(t)}"),)),
}  # fmt: skip


async def test_random_text_never_yields_unknown_or_internal(auth: AuthServer) -> None:
    """Each RPC, for random and hostile strings in its fields (as a user and as an admin):
    every answer is OK or a typed error code; afterwards health is still SERVING."""
    user, admin = await auth.account(), await auth.admin()
    loop = asyncio.get_running_loop()
    seen: dict[str, set[grpc.StatusCode]] = {}

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(sorted(CALLS)), text=TEXT, as_admin=st.booleans())
    def check(name: str, text: str, as_admin: bool) -> None:
        caller = admin if as_admin else user

        async def run() -> grpc.StatusCode:
            try:
                await CALLS[name](auth, caller, text)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        code = asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)
        seen.setdefault(name, set()).add(code)
        assert code not in BAD_CODES, (name, text, code)

    await asyncio.to_thread(check)
    for name, build in CALLS.items():  # every RPC also with the nastiest fixed inputs
        for text in ("\x00", "a\x00@b.co", "x" * 1100, "%_'\\"):
            code = await _code(build(auth, admin, text))
            assert code not in BAD_CODES, (name, text, code)
    health = await health_pb2_grpc.HealthStub(auth.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def _code(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
