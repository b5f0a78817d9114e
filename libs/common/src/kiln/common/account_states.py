"""Account states: what every service must know about a user beyond their access token.

An access token carries the role its user had when it was issued and stays valid until it
expires. The auth service publishes each user's current state (role, active, and the time
before which their tokens no longer count) to the JetStream key-value bucket
`bus.ACCOUNTS_BUCKET`, key = user id; only auth writes it. Every service watches the bucket
into memory (`AccountStates`) and checks each verified token against it, without a call
per request: a deactivated user, or a token issued before a "log out everywhere", is
UNAUTHENTICATED, and the role is the lower of the token's and the current one, so a demoted
admin loses the admin RPCs within the time a bucket update takes to arrive.

While the first full replay of the bucket has not arrived, a strict `AccountStates` is not
ready: health reports NOT_SERVING (`ready` is a dependency probe) and authenticated calls
get UNAVAILABLE, so no process serves on tokens it cannot yet judge. A bucket that does not
exist yet (auth has never published) counts as empty. After that, a lost connection leaves
the last known states in place (the process goes NOT_SERVING on its NATS probe anyway) and
the watch replays the whole bucket again once the connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from kiln.common import bus, errors
from kiln.common.principal import Principal, Role

log = structlog.get_logger("kiln.account_states")

SIGNED_OUT = "the access token was revoked; sign in again"
DEACTIVATED = "the account is deactivated"
NOT_READY = "account states are still loading; try again in a moment"
_RANK = {Role.USER: 0, Role.ADMIN: 1}


@dataclasses.dataclass(frozen=True)
class AccountState:
    """A user's current role, whether they may act at all, and the epoch second before which
    their access tokens are refused (0: none)."""

    role: Role
    active: bool
    tokens_not_before: int = 0

    def encode(self) -> bytes:
        """The bucket value: small JSON."""
        record = {
            "role": self.role.value,
            "active": self.active,
            "tokens_not_before": self.tokens_not_before,
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> AccountState:
        """Parses a bucket value; ValueError when it is not one."""
        try:
            raw: Any = json.loads(data)
            return cls(Role(raw["role"]), bool(raw["active"]), int(raw["tokens_not_before"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError("not an account state") from exc

    def admit(self, caller: Principal) -> Principal:
        """`caller` as this state allows: UNAUTHENTICATED when deactivated or the token is
        older than `tokens_not_before`; the role capped at the current one."""
        if not self.active:
            raise errors.Unauthenticated(DEACTIVATED, reason="ACCOUNT_DEACTIVATED")
        if caller.issued_at < self.tokens_not_before:
            raise errors.Unauthenticated(SIGNED_OUT, reason="TOKEN_REVOKED")
        role = min(caller.role, self.role, key=_RANK.__getitem__)
        return caller if role is caller.role else dataclasses.replace(caller, role=role)


class AccountStates:
    """The latest `AccountState` per user id, kept in memory by watching the bucket.

    `strict`: refuse authenticated calls until the first replay is in (tasks, imagegen);
    auth itself is not strict, since it must serve Login even while NATS is down.
    """

    def __init__(self, *, strict: bool = True, rewatch_interval: float = 300.0) -> None:
        self.strict = strict
        self._states: dict[str, AccountState] = {}
        self._ready = asyncio.Event()
        self._rewatch_interval = rewatch_interval

    def get(self, user_id: str) -> AccountState | None:
        """The known state of `user_id`, or None (then the token alone decides)."""
        return self._states.get(user_id)

    def admit(self, caller: Principal) -> Principal:
        """`caller` checked against their current state (see `AccountState.admit`)."""
        if not self._ready.is_set() and self.strict:
            raise errors.Unavailable(NOT_READY, reason="ACCOUNT_STATES_LOADING")
        state = self._states.get(caller.user_id)
        return caller if state is None else state.admit(caller)

    async def ready(self) -> bool:
        """Whether the first full replay has arrived (a health dependency probe)."""
        return self._ready.is_set()

    async def wait_ready(self, seconds: float) -> bool:
        """Waits up to `seconds` for the first replay; returns whether it came."""
        try:
            await asyncio.wait_for(self._ready.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def replace_all(self, states: dict[str, AccountState]) -> None:
        """Swaps in a complete replay."""
        self._states = states
        self._ready.set()

    def apply(self, user_id: str, state: AccountState | None) -> None:
        """One live update; None removes the user's state."""
        if state is None:
            self._states.pop(user_id, None)
        else:
            self._states[user_id] = state

    async def run(self, nc: Client, retry_delay: float = 2.0) -> None:
        """Watches the bucket forever: replays it, then follows updates; starts over after an
        error, a reconnect, or `rewatch_interval` seconds. Cancel to stop."""
        while True:
            try:
                await self._watch_once(nc)
            except js_errors.BucketNotFoundError:
                if not self._ready.is_set():
                    log.info("account_states_bucket_missing", bucket=bus.ACCOUNTS_BUCKET)
                    self.replace_all({})
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                log.warning("account_states_watch_failed", error=type(exc).__name__)
            except Exception:  # the watch must outlive any one bad round
                log.exception("account_states_watch_crashed")
            await asyncio.sleep(retry_delay)

    async def _watch_once(self, nc: Client) -> None:
        reconnects = nc.stats["reconnects"]
        kv = await nc.jetstream().key_value(bus.ACCOUNTS_BUCKET)
        watcher = await kv.watchall()
        loop = asyncio.get_running_loop()
        until = loop.time() + self._rewatch_interval
        replay: dict[str, AccountState] | None = {}
        try:
            while loop.time() < until:
                try:
                    entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    if nc.stats["reconnects"] != reconnects:
                        log.info("account_states_rewatch_after_reconnect")
                        return
                    continue
                if entry is None:  # the end of the replay
                    if replay is not None:
                        self.replace_all(replay)
                        log.info("account_states_synced", accounts=len(replay))
                        replay = None
                    continue
                state = _decode(entry)
                if replay is not None:
                    if state is not None:
                        replay[entry.key] = state
                else:
                    self.apply(entry.key, state)
        finally:
            # On a closed connection unsubscribing fails; the subscription is gone anyway.
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]


def _decode(entry: KeyValue.Entry) -> AccountState | None:
    if entry.operation is not None or entry.value is None:  # a delete or purge marker
        return None
    try:
        return AccountState.decode(entry.value)
    except ValueError:
        log.warning("account_state_unreadable", user_id=entry.key)
        return None
