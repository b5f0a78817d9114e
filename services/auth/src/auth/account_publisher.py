"""Publishes each user's account state to the `auth_accounts` bucket for the other services.

PostgreSQL is the source of truth; the bucket is a copy every service watches (see
kiln.common.account_states). A change (demotion, deactivation, "log out everywhere") is
published right after its transaction commits. NATS being down must not stop auth from
serving, so publishing happens here in the background: connecting, creating the bucket and
writing are retried with a growing pause, changes wait in a set of user ids, and every
`resync_interval` the whole users table is compared with the bucket and whatever differs is
rewritten, so a write lost to a crash or an outage is repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats.errors
import sqlalchemy.exc
import structlog
from nats.aio.client import Client
from nats.js.kv import KeyValue
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import user_store
from kiln.common import bus, jetstream
from kiln.common.account_states import AccountStates
from kiln.common.settings import NatsSettings

log = structlog.get_logger("auth.account_publisher")

_REPLAY_WAIT_SECONDS = 10.0
_FAILURES = (
    nats.errors.Error,
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)


class AccountPublisher:
    """Keeps the bucket equal to the users table; `notify(user_id)` after each change."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: NatsSettings,
        states: AccountStates,
        *,
        replication: bus.ReplicationSettings,
        resync_interval: float,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._replication = replication
        self._states = states
        self._resync_interval = resync_interval
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._pending: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self.nc: Client | None = None

    def notify(self, user_id: uuid.UUID) -> None:
        """Publishes `user_id`'s state soon (call after the change committed)."""
        self._pending.add(user_id)
        self._wake.set()

    async def run(self) -> None:
        """Connects, then publishes changes and resyncs forever; cancel to stop."""
        nc = await self._connect()
        self.nc = nc
        watch = asyncio.create_task(self._states.run(nc), name="account-states-watch")
        loop = asyncio.get_running_loop()
        next_resync = loop.time()
        delay = self._retry_delay
        try:
            # The resync writes only what differs from the bucket, so it needs the replay.
            await self._states.wait_ready(_REPLAY_WAIT_SECONDS)
            while True:
                self._wake.clear()
                try:
                    kv = await self._bucket(nc)
                    if loop.time() >= next_resync:
                        await self._resync(kv)
                        next_resync = loop.time() + self._resync_interval
                    await self._publish_pending(kv)
                except _FAILURES as exc:
                    log.warning("account_publish_failed", error=type(exc).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_retry_delay)
                    continue
                except Exception:  # publishing must outlive any one bad round
                    log.exception("account_publish_crashed")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_retry_delay)
                    continue
                delay = self._retry_delay
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_resync - loop.time()))
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            with contextlib.suppress(Exception):
                await nc.close()

    async def _connect(self) -> Client:
        delay = self._retry_delay
        while True:
            try:
                return await jetstream.connect(self._settings, "auth")
            except _FAILURES as exc:
                log.warning("account_publisher_cannot_connect", error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry_delay)

    async def _bucket(self, nc: Client) -> KeyValue:
        js = nc.jetstream()
        await jetstream.provision(js, bus.auth_topology(self._replication))
        return await js.key_value(bus.ACCOUNTS_BUCKET)

    async def _resync(self, kv: KeyValue) -> None:
        async with self._engine.connect() as conn:
            wanted = await user_store.account_states(conn)
        written = 0
        for user_id, state in wanted.items():
            if self._states.get(user_id) != state:
                await kv.put(user_id, state.encode())
                self._states.apply(user_id, state)
                written += 1
        log.info("account_states_resynced", accounts=len(wanted), written=written)

    async def _publish_pending(self, kv: KeyValue) -> None:
        batch, self._pending = self._pending, set()
        try:
            while batch:
                user_id = next(iter(batch))
                async with self._engine.connect() as conn:
                    state = await user_store.account_state(conn, user_id)
                if state is not None:
                    await kv.put(str(user_id), state.encode())
                    self._states.apply(str(user_id), state)
                    log.info("account_state_published", user_id=str(user_id))
                batch.discard(user_id)
        finally:
            self._pending |= batch
