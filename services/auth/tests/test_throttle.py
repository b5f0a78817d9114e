"""Login throttling per account and per client address, counted in PostgreSQL.

Every test here has its own database: all test clients share the address 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from auth.testing import PASSWORD, AuthServer, make_config, new_email, start_server, stop_server
from kiln.auth.v1 import auth_pb2
from kiln.common import interceptors

WRONG = "not the password at all"


@pytest.fixture
async def strict(migrated_database: str) -> AsyncIterator[AuthServer]:
    """A server that locks an account after 3 failures and an address after 8, for 2 s."""
    server = await start_server(
        make_config(
            migrated_database,
            AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT="3",
            AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS="8",
            AUTH_LOGIN_LOCKOUT_SECONDS="2",
        )
    )
    yield server
    await stop_server(server)


async def attempt(auth: AuthServer, email: str, password: str) -> grpc.StatusCode:
    """The code a password login ends with."""
    try:
        await auth.login(email, password)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay, in seconds, of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == interceptors.STATUS_DETAILS_KEY:
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("no RetryInfo")


async def test_account_is_locked_after_repeated_failures(strict: AuthServer) -> None:
    """After 3 wrong passwords the account gets RESOURCE_EXHAUSTED with a retry delay, even
    with the right password; after the lockout the right password works again."""
    email = new_email()
    await strict.register(email)
    codes = [await attempt(strict, email, WRONG) for _ in range(3)]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await strict.login(email, PASSWORD)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_delay(caught.value) <= 2
    await asyncio.sleep(2.1)
    assert await attempt(strict, email, PASSWORD) == grpc.StatusCode.OK


async def test_unknown_emails_are_throttled_alike(strict: AuthServer) -> None:
    """An unknown email is counted and locked exactly like a real one, so the lock does not
    tell an attacker whether the account exists."""
    real, ghost = new_email(), new_email()
    await strict.register(real)
    real_codes = [await attempt(strict, real, WRONG) for _ in range(4)]
    ghost_codes = [await attempt(strict, ghost, WRONG) for _ in range(4)]
    assert real_codes == ghost_codes
    assert real_codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_success_clears_the_account_count(strict: AuthServer) -> None:
    """Failures followed by a successful sign-in start the count again."""
    email = new_email()
    await strict.register(email)
    for _ in range(2):
        assert await attempt(strict, email, WRONG) == grpc.StatusCode.UNAUTHENTICATED
    assert await attempt(strict, email, PASSWORD) == grpc.StatusCode.OK
    for _ in range(2):
        assert await attempt(strict, email, WRONG) == grpc.StatusCode.UNAUTHENTICATED
    assert await attempt(strict, email, PASSWORD) == grpc.StatusCode.OK


async def test_address_is_locked_after_failures_across_accounts(strict: AuthServer) -> None:
    """Spraying guesses over many accounts from one address locks the address: after 8
    failures a fresh account with the right password is refused from there too."""
    for _ in range(8):
        assert await attempt(strict, new_email(), WRONG) == grpc.StatusCode.UNAUTHENTICATED
    victim = new_email()
    await strict.register(victim)
    assert await attempt(strict, victim, PASSWORD) == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_successes_do_not_count_against_the_address(strict: AuthServer) -> None:
    """Many successful sign-ins from one address (an office behind NAT) never lock it."""
    email = new_email()
    await strict.register(email)
    for _ in range(10):
        assert await attempt(strict, email, PASSWORD) == grpc.StatusCode.OK


async def test_parallel_burst_gets_no_more_guesses_than_the_limit(strict: AuthServer) -> None:
    """20 guesses fired at once at one account: attempts are counted before the password is
    checked, so at most 3 are checked and the rest are RESOURCE_EXHAUSTED."""
    email = new_email()
    await strict.register(email)
    codes = await asyncio.gather(*(attempt(strict, email, WRONG) for _ in range(20)))
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) <= 3
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 17


async def test_api_key_guesses_are_throttled_per_address(strict: AuthServer) -> None:
    """Failed API-key sign-ins count against the client address like passwords do."""
    request = auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key="kiln_0000_x"))
    codes = []
    for _ in range(9):
        try:
            await strict.stub.Login(request)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
    assert codes[:8] == [grpc.StatusCode.UNAUTHENTICATED] * 8
    assert codes[8] == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_housekeeping_prunes_stale_counters(migrated_database: str) -> None:
    """Counters whose window and lock are over are deleted by housekeeping."""
    server = await start_server(
        make_config(migrated_database, AUTH_LOGIN_FAILURE_WINDOW_SECONDS="0.5")
    )
    try:
        await attempt(server, new_email(), WRONG)
        await asyncio.sleep(0.6)
        from auth import housekeeping  # noqa: PLC0415

        _, counters = await housekeeping.run_once(server.app.core)
        assert counters == 2  # the account and the address
    finally:
        await stop_server(server)
