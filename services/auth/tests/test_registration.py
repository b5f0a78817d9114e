"""Register under load and abuse: throttled per address, taken emails cost no hash, hashing
bounded by a gate, self-registration closable, and admins creating accounts (CreateUser).

Each test starts its own server on a fresh database: all test clients share 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from auth import account_usecases, hashgate
from auth.testing import PASSWORD, AuthServer, make_config, new_email, start_server, stop_server
from kiln.auth.v1 import auth_pb2
from kiln.common import errors
from kiln.common.testing.status import error_reason

from .test_accounts import violations
from .test_throttle import retry_delay

ServerFactory = Callable[..., Awaitable[AuthServer]]


@pytest.fixture
async def server_with(migrated_database: str) -> AsyncIterator[ServerFactory]:
    """Starts an auth server with the given setting overrides; stops it afterwards."""
    started: list[AuthServer] = []

    async def start(**overrides: str) -> AuthServer:
        server = await start_server(make_config(migrated_database, **overrides))
        started.append(server)
        return server

    yield start
    for server in started:
        await stop_server(server)


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    """The code an awaited call ends with."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_register_is_throttled_per_client_address(server_with: ServerFactory) -> None:
    """Past AUTH_REGISTER_MAX_PER_ADDRESS calls from one address, Register is refused with
    RESOURCE_EXHAUSTED and a retry delay; attempts on a taken email count too, so Register
    is no unthrottled way to probe emails or burn argon2 time."""
    auth = await server_with(AUTH_REGISTER_MAX_PER_ADDRESS="3")
    email = new_email()
    await auth.register(email)
    assert await code_of(auth.register(email)) == grpc.StatusCode.ALREADY_EXISTS
    await auth.register(new_email())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.register(new_email())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many registrations" in (caught.value.details() or "")
    assert retry_delay(caught.value) > 0
    # Login keeps its own counters: the registrations did not lock anyone out.
    assert (await auth.login(email)).user.email == email


async def test_taken_email_is_refused_before_any_hashing(
    server_with: ServerFactory,
) -> None:
    """With every hashing slot taken and no room to wait, Register of a taken email still
    answers ALREADY_EXISTS (the email is looked up before the password is hashed), a new
    email gets RESOURCE_EXHAUSTED at once instead of queueing, and Login is not gated."""
    auth = await server_with(AUTH_REGISTER_MAX_CONCURRENT_HASHES="1", AUTH_REGISTER_MAX_WAITING="0")
    email = new_email()
    await auth.register(email)
    gate = auth.app.core.new_account_hashes
    await gate.acquire()  # the one slot is busy, as during a long hash
    try:
        taken = await asyncio.gather(*(code_of(auth.register(email)) for _ in range(10)))
        assert set(taken) == {grpc.StatusCode.ALREADY_EXISTS}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.register(new_email())
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.details() == hashgate.BUSY_MESSAGE
        assert (await auth.login(email)).user.email == email
    finally:
        gate.release()
    assert (await auth.register(new_email())).active


async def test_hash_gate_bounds_running_and_waiting_callers() -> None:
    """The gate lets `concurrency` callers in, queues up to `max_waiting` more, refuses the
    rest with RESOURCE_EXHAUSTED, and lets a waiter in as soon as a slot is released."""
    gate = hashgate.HashGate(concurrency=1, max_waiting=1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)  # let the waiter queue up
    assert not waiter.done()
    with pytest.raises(errors.ResourceExhausted):
        await gate.acquire()
    gate.release()
    await asyncio.wait_for(waiter, timeout=5)
    gate.release()


async def test_closed_self_registration_and_admin_created_accounts(
    server_with: ServerFactory,
) -> None:
    """With AUTH_SELF_REGISTRATION=false, Register is PERMISSION_DENIED with a message that
    says why and reason REGISTRATION_CLOSED (not the admin-role reason); an admin's
    CreateUser still creates accounts (of either role) that can sign in; a regular user's
    CreateUser is PERMISSION_DENIED; a taken email is ALREADY_EXISTS and a bad field is
    INVALID_ARGUMENT naming it."""
    auth = await server_with(AUTH_SELF_REGISTRATION="false")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.register(new_email())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == account_usecases.REGISTRATION_CLOSED
    assert error_reason(caught.value) == "REGISTRATION_CLOSED"

    admin = await auth.admin()
    email = new_email()
    created = await auth.stub.CreateUser(
        auth_pb2.CreateUserRequest(
            email=email, password=PASSWORD, display_name="Made", role=auth_pb2.ROLE_ADMIN
        ),
        metadata=admin.metadata,
    )
    assert created.user.role == auth_pb2.ROLE_ADMIN
    assert created.user.active
    plain = await auth.stub.CreateUser(
        auth_pb2.CreateUserRequest(email=new_email(), password=PASSWORD, display_name="Plain"),
        metadata=admin.metadata,
    )
    assert plain.user.role == auth_pb2.ROLE_USER
    signed_in = await auth.login(email)
    assert signed_in.user.id == created.user.id

    plain_login = await auth.login(plain.user.email)
    plain_metadata = (("authorization", f"Bearer {plain_login.tokens.access_token}"),)
    denied = auth.stub.CreateUser(
        auth_pb2.CreateUserRequest(email=new_email(), password=PASSWORD, display_name="Y"),
        metadata=plain_metadata,
    )
    assert await code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    taken = auth.stub.CreateUser(
        auth_pb2.CreateUserRequest(email=email, password=PASSWORD, display_name="Again"),
        metadata=admin.metadata,
    )
    assert await code_of(taken) == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await auth.stub.CreateUser(
            auth_pb2.CreateUserRequest(email="not-an-email", password="short", display_name="Z"),
            metadata=admin.metadata,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(bad.value)) == {"email", "password"}
