"""WatchTask: a snapshot, then every change in order, fanned out from one subscription per
watched task per replica.

Whichever replica commits a change to a task announces it on the core NATS subject
`tasks.changes.<task_id>` (and wakes its own watchers directly). A replica subscribes to
that subject once per task that has watchers and sets an `asyncio.Event` per watcher; each
watcher then re-reads the task row, so bursts of changes coalesce into one read, and a
lost notification only delays an update until the periodic re-read. Versions come from the
row, so nothing is skipped: subtask changes are selected by the version they were stamped
with. The subscription is dropped when the last watcher of a task leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kiln.common import bus, errors

log = structlog.get_logger("tasks.watch")


@dataclasses.dataclass(eq=False)
class _Topic:
    waiters: set[asyncio.Event] = dataclasses.field(default_factory=set)
    subscription: Subscription | None = None


class Hub:
    """Per-replica registry of watched tasks and their watchers."""

    def __init__(self, nc: Client, max_watchers_per_user: int) -> None:
        self._nc = nc
        self._max_per_user = max_watchers_per_user
        self._topics: dict[str, _Topic] = {}
        self._per_user: dict[str, int] = {}

    @property
    def watched_tasks(self) -> int:
        """Tasks with at least one watcher on this replica (one subscription each)."""
        return len(self._topics)

    @property
    def watchers(self) -> int:
        """Open watch streams on this replica."""
        return sum(len(t.waiters) for t in self._topics.values())

    async def announce(self, task_id: str, version: int) -> None:
        """Tells every replica's watchers of `task_id` that it changed (after commit)."""
        self._wake(task_id)
        try:
            await self._nc.publish(bus.task_changes_subject(task_id), str(version).encode())
        except Exception:
            # Other replicas' watchers still catch up on their periodic re-read.
            log.warning("change_announce_failed", task_id=task_id)

    def _wake(self, task_id: str) -> None:
        topic = self._topics.get(task_id)
        if topic is not None:
            for waiter in topic.waiters:
                waiter.set()

    @contextlib.asynccontextmanager
    async def listen(self, task_id: str, user_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `task_id` changes, for as long as the context lasts."""
        if self._per_user.get(user_id, 0) >= self._max_per_user:
            raise errors.ResourceExhausted(
                f"at most {self._max_per_user} concurrent watches per user", retry_after=5.0
            )
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        waiter = asyncio.Event()
        topic = self._topics.get(task_id)
        if topic is None:
            topic = self._topics[task_id] = _Topic()
            topic.waiters.add(waiter)
            await self._subscribe(task_id, topic)
        else:
            topic.waiters.add(waiter)
        try:
            yield waiter
        finally:
            topic.waiters.discard(waiter)
            left = self._per_user[user_id] - 1
            if left:
                self._per_user[user_id] = left
            else:
                del self._per_user[user_id]
            if not topic.waiters and self._topics.get(task_id) is topic:
                del self._topics[task_id]
                if topic.subscription is not None:
                    with contextlib.suppress(Exception):
                        await topic.subscription.unsubscribe()

    async def _subscribe(self, task_id: str, topic: _Topic) -> None:
        async def on_change(_msg: Msg) -> None:
            self._wake(task_id)

        try:
            subscription = await self._nc.subscribe(bus.task_changes_subject(task_id), cb=on_change)
        except Exception:
            log.warning("watch_subscribe_failed", task_id=task_id)
            return
        if topic.waiters and self._topics.get(task_id) is topic:
            topic.subscription = subscription
        else:  # everyone left while we subscribed
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def wait_for_change(waiter: asyncio.Event, refresh: float) -> None:
    """Waits until `waiter` is set or `refresh` seconds pass, then clears it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(waiter.wait(), timeout=refresh)
    waiter.clear()
