"""Password hashing: OWASP parameters by default, off the event loop, re-hashed on login
when the parameters change, and no timing difference between unknown email and wrong
password."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import argon2
import grpc
import pytest
import sqlalchemy as sa

from auth import passwords
from auth.config import (
    OWASP_MIN_MEMORY_KIB,
    OWASP_MIN_PARALLELISM,
    OWASP_MIN_TIME_COST,
    AuthConfig,
)
from auth.tables import users
from auth.testing import PASSWORD, make_config, new_email, start_server, stop_server
from kiln.common import config

PRODUCTION_ARGON2 = {"AUTH_ARGON2_MEMORY_KIB": "19456", "AUTH_ARGON2_TIME_COST": "2",
                     "AUTH_ARGON2_PARALLELISM": "1"}  # fmt: skip


def test_production_defaults_meet_owasp_minimum() -> None:
    """Without overrides, argon2id runs with at least 19 MiB, 2 iterations, 1 lane, and the
    stored hash says so."""
    defaults = config.load(AuthConfig, environ={"DATABASE_URL": "postgresql://x/y"}, env_file=None)
    assert defaults.argon2_memory_kib >= OWASP_MIN_MEMORY_KIB == 19456
    assert defaults.argon2_time_cost >= OWASP_MIN_TIME_COST == 2
    assert defaults.argon2_parallelism >= OWASP_MIN_PARALLELISM == 1
    hasher = passwords.PasswordHasher(
        passwords.HashParameters(
            defaults.argon2_memory_kib, defaults.argon2_time_cost, defaults.argon2_parallelism
        )
    )
    encoded = asyncio.run(hasher.hash(PASSWORD))
    parameters = argon2.extract_parameters(encoded)
    assert parameters.type is argon2.Type.ID
    assert parameters.memory_cost >= 19456
    assert parameters.time_cost >= 2
    assert parameters.parallelism >= 1


async def test_hashing_runs_off_the_event_loop() -> None:
    """While a production-cost hash is computed, the event loop keeps running other tasks
    (a ticker every 5 ms keeps ticking)."""
    hasher = passwords.PasswordHasher(passwords.HashParameters(19456, 2, 1))
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    encoded = await hasher.hash(PASSWORD)
    assert await hasher.verify(encoded, PASSWORD)
    elapsed = time.perf_counter() - started
    done.set()
    await task
    assert ticks >= max(3, int(elapsed / 0.005 * 0.3))


def test_password_policy() -> None:
    """At least 12 characters, at most 1024, and not the email in any case."""
    assert passwords.policy_violations("p", "x" * 12, "a@example.com") == []
    assert passwords.policy_violations("p", "x" * 11, "a@example.com")
    assert passwords.policy_violations("p", "x" * 1025, "a@example.com")
    assert passwords.policy_violations("p", "Long.Enough@Example.com", "long.enough@example.com")
    assert passwords.policy_violations("p", "", "a@example.com")[0].field == "p"


async def test_login_rehashes_when_parameters_change(auth_database: str) -> None:
    """A hash made with other parameters is replaced on the next successful login."""
    email = new_email()
    cheap = await start_server(make_config(auth_database))
    try:
        await cheap.register(email)
    finally:
        await stop_server(cheap)
    stronger = await start_server(make_config(auth_database, AUTH_ARGON2_MEMORY_KIB="128"))
    try:
        async with stronger.app.engine.connect() as conn:
            before = await conn.scalar(
                sa.select(users.c.password_hash).where(users.c.email == email)
            )
        assert "m=64," in str(before)
        await stronger.login(email)
        async with stronger.app.engine.connect() as conn:
            after = await conn.scalar(
                sa.select(users.c.password_hash).where(users.c.email == email)
            )
        assert "m=128," in str(after)
        await stronger.login(email)
    finally:
        await stop_server(stronger)


async def test_unknown_email_costs_as_much_as_a_wrong_password(auth_database: str) -> None:
    """With production argon2 parameters, the median time of a login with an unknown email
    is within a factor of 1.5 of one with a wrong password (the unknown email is checked
    against a dummy hash), so timing does not reveal which emails exist."""
    server = await start_server(
        make_config(auth_database, AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT="100", **PRODUCTION_ARGON2)
    )
    try:
        email = new_email()
        await server.register(email)

        async def timed(address: str) -> float:
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await server.login(address, "definitely wrong " + uuid.uuid4().hex)
            elapsed = time.perf_counter() - started
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            return elapsed

        wrong, unknown = [], []
        for _ in range(7):
            wrong.append(await timed(email))
            unknown.append(await timed(new_email()))
        ratio = statistics.median(unknown) / statistics.median(wrong)
        assert 1 / 1.5 < ratio < 1.5, (wrong, unknown)
        assert statistics.median(wrong) > 0.01  # the real hash ran, not a shortcut
    finally:
        await stop_server(server)
