"""Account states: the rule that judges a verified token by its user's current state, and
the watch that keeps the states in memory from the auth_accounts bucket (real NATS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from nats.js import api

from kiln.common import bus, errors, jetstream
from kiln.common.account_states import AccountState, AccountStates
from kiln.common.principal import Principal, Role
from kiln.common.settings import NatsSettings
from kiln.common.testing import NatsServer

ADMIN_TOKEN = Principal("u1", "a@example.com", Role.ADMIN, "jti", issued_at=1000)


def test_state_refuses_deactivated_and_signed_out_tokens_and_caps_the_role() -> None:
    """A deactivated user's token and a token issued before tokens_not_before are
    UNAUTHENTICATED; a later token passes; the role is the lower of token and state."""
    with pytest.raises(errors.Unauthenticated):
        AccountState(Role.ADMIN, active=False).admit(ADMIN_TOKEN)
    with pytest.raises(errors.Unauthenticated):
        AccountState(Role.ADMIN, active=True, tokens_not_before=1001).admit(ADMIN_TOKEN)
    assert AccountState(Role.ADMIN, True, 1000).admit(ADMIN_TOKEN) == ADMIN_TOKEN
    demoted = AccountState(Role.USER, True).admit(ADMIN_TOKEN)
    assert demoted.role is Role.USER
    promoted = AccountState(Role.ADMIN, True).admit(
        Principal("u1", "a@example.com", Role.USER, "jti", issued_at=1000)
    )
    assert promoted.role is Role.USER  # a promotion needs a new token


def test_state_round_trips_and_refuses_garbage() -> None:
    """A state survives encode/decode; anything else is a ValueError."""
    state = AccountState(Role.USER, False, 1234)
    assert AccountState.decode(state.encode()) == state
    for bad in (b"", b"{}", b"[1]", b'{"role":"king","active":true,"tokens_not_before":0}'):
        with pytest.raises(ValueError, match="not an account state"):
            AccountState.decode(bad)


def test_strict_states_refuse_calls_until_the_first_replay() -> None:
    """Before the first replay a strict AccountStates answers UNAVAILABLE; a lax one lets
    the token decide."""
    with pytest.raises(errors.Unavailable):
        AccountStates(strict=True).admit(ADMIN_TOKEN)
    assert AccountStates(strict=False).admit(ADMIN_TOKEN) == ADMIN_TOKEN


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Polls `condition` until it holds; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_watch_replays_the_bucket_and_follows_updates(private_nats: NatsServer) -> None:
    """With no bucket yet the states are ready and empty; once auth creates the bucket, its
    values are replayed and every later update lands in memory within moments, also after
    nats-server was killed and restarted (the watch starts over after the reconnect)."""
    nc = await jetstream.connect(NatsSettings(nats_url=private_nats.url), "test")
    states = AccountStates()
    watching = asyncio.create_task(states.run(nc, retry_delay=0.1))
    try:
        assert await states.wait_ready(10)
        assert states.get("u1") is None
        js = nc.jetstream()
        await jetstream.provision(js, bus.auth_topology(bus.ReplicationSettings()))
        kv = await js.key_value(bus.ACCOUNTS_BUCKET)
        await kv.put("u1", AccountState(Role.USER, True).encode())
        await wait_for(lambda: states.get("u1") == AccountState(Role.USER, True))
        await kv.put("u1", AccountState(Role.USER, False, 5).encode())
        await wait_for(lambda: states.get("u1") == AccountState(Role.USER, False, 5))
        with pytest.raises(errors.Unauthenticated):
            states.admit(ADMIN_TOKEN)
        info = await js.stream_info(f"KV_{bus.ACCOUNTS_BUCKET}")
        assert info.config.max_msgs_per_subject == 1  # the latest state only
        assert info.config.storage == api.StorageType.FILE

        private_nats.kill()
        await asyncio.to_thread(private_nats.start)
        await wait_for(lambda: nc.is_connected)
        kv = await nc.jetstream().key_value(bus.ACCOUNTS_BUCKET)
        await kv.put("u1", AccountState(Role.ADMIN, True, 7).encode())
        await wait_for(lambda: states.get("u1") == AccountState(Role.ADMIN, True, 7))
    finally:
        watching.cancel()
        await nc.close()
