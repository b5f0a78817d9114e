"""WatchTask's plumbing: one subscription and one shared change log per watched task per
replica.

Whichever replica commits a change to a task announces it on the core NATS subject
`tasks.changes.<task_id>` (and wakes its own watchers directly; its own announcement coming
back from NATS is recognised by its version and ignored). A replica subscribes to that
subject once per task that has watchers, and counts each announcement as a *change*.

Every watched task has a log of *rounds*: what changed between two versions of the task,
read from the database once and shared by all its watchers. After a change, the first
watcher to look reads the next round (from the log's head version to the task's current
one); the others find it in the log. A read started before a change may have missed it, so
the log counts itself current only up to the change count at which its last read started,
and a change during a read makes the watchers read again. Each watcher keeps its own cursor
(a version), so a slow client falls behind without holding up the others; rounds every
watcher has passed are dropped, and a watcher whose cursor has fallen out of the log reads
what it missed on its own. A lost notification only delays an update until the periodic
re-read. The subscription and the log go when the last watcher leaves.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kiln.common import bus, errors

log = structlog.get_logger("tasks.watch")

MAX_ROUNDS = 1024
"""Rounds a log keeps at most; a watcher further behind reads on its own."""


@dataclasses.dataclass(frozen=True)
class Round:
    """What changed in a task after version `after`, up to `version`; `content` is the
    service's (the updates to send). `gone`: the task no longer exists."""

    after: int
    version: int
    content: Any = None
    gone: bool = False


ReadRound = Callable[[int], Awaitable[Round]]
"""Reads the round after a version (the log's head) from the database."""


class _Topic:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.subscription: Subscription | None = None
        self.changes = 0
        self.announced_version = -1
        self.rounds: list[Round] = []
        self.head: int | None = None
        self.covered = 0
        """The change count at which the read that produced the head started."""
        self.gone = False
        """The task no longer exists (deleted while watched)."""
        self._reading: asyncio.Future[None] | None = None

    @property
    def wants_subtasks(self) -> bool:
        """Whether some watcher of the task asked for its subtasks (a round read for
        watchers of the task alone need not read them)."""
        return any(listener.wants_subtasks for listener in self.listeners)

    def bump(self) -> None:
        self.changes += 1
        for listener in self.listeners:
            listener.event.set()

    def start(self, version: int, covered: int) -> None:
        if self.head is None:
            self.head, self.covered = version, covered

    def after(self, cursor: int) -> list[Round] | None:
        """The rounds newer than `cursor`; None when the log no longer reaches back to it."""
        if self.head is None or cursor >= self.head:
            return []
        if not self.rounds or self.rounds[0].after > cursor:
            return None
        first = bisect.bisect_right([r.version for r in self.rounds], cursor)
        return self.rounds[first:]

    async def catch_up(self, read: ReadRound) -> None:
        """Makes the log hold every change counted so far (one read at a time)."""
        needed = self.changes
        while self.covered < needed and self.head is not None:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read_next(read))
                self._reading.add_done_callback(_retrieve)
            # Shielded: a watcher going away must not cancel the read the others wait for.
            await asyncio.shield(self._reading)

    async def _read_next(self, read: ReadRound) -> None:
        started = self.changes
        try:
            assert self.head is not None
            round_ = await read(self.head)
            if round_.gone:
                self.gone = True
            elif round_.version > self.head:
                self.rounds.append(round_)
                self.head = round_.version
                self._trim()
            self.covered = max(self.covered, started)
        finally:
            self._reading = None

    def _trim(self) -> None:
        passed = min((listener.cursor for listener in self.listeners), default=0)
        drop = bisect.bisect_right([r.version for r in self.rounds], passed)
        drop = max(drop, len(self.rounds) - MAX_ROUNDS)
        if drop > 0:
            del self.rounds[:drop]


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # the watchers saw it; do not log it again as unretrieved


class Listener:
    """One watcher's place in a task's change log."""

    def __init__(self, topic: _Topic, wants_subtasks: bool = True) -> None:
        self._topic = topic
        self.wants_subtasks = wants_subtasks
        self.event = asyncio.Event()
        self.cursor = 0
        # Any read starts after this, so it sees every change counted so far.
        self._known_changes = topic.changes

    def start(self, version: int) -> None:
        """Places the watcher at `version`, from a read started after it began listening."""
        self.cursor = version
        self._topic.start(version, self._known_changes)

    @property
    def shared_wants_subtasks(self) -> bool:
        """Whether the next shared round should read subtasks (some watcher wants them)."""
        return self._topic.wants_subtasks

    @property
    def gone(self) -> bool:
        """The task stopped existing while watched."""
        return self._topic.gone

    def rounds(self) -> list[Round] | None:
        """The logged rounds after the cursor; None when the log does not reach back."""
        return self._topic.after(self.cursor)

    async def wait_and_catch_up(self, refresh: float, read: ReadRound) -> None:
        """Waits until the task changed after the log was last read, or `refresh` seconds
        (the periodic re-read), then makes the log current."""
        topic = self._topic
        if topic.changes <= topic.covered:
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), timeout=refresh)
            except TimeoutError:
                if topic.changes <= topic.covered:
                    topic.bump()
        await topic.catch_up(read)
        self._known_changes = topic.covered


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
        return sum(len(t.listeners) for t in self._topics.values())

    async def announce(self, task_id: str, version: int) -> None:
        """Tells every replica's watchers of `task_id` that it changed (after commit)."""
        self._changed(task_id, version)
        try:
            await self._nc.publish(bus.task_changes_subject(task_id), str(version).encode())
        except Exception:
            # Other replicas' watchers still catch up on their periodic re-read.
            log.warning("change_announce_failed", task_id=task_id)

    def _changed(self, task_id: str, version: int | None) -> None:
        topic = self._topics.get(task_id)
        if topic is None:
            return
        if version is not None:
            if version <= topic.announced_version:
                return  # our own announcement coming back, or an older one
            topic.announced_version = version
        topic.bump()

    @contextlib.asynccontextmanager
    async def listen(
        self, task_id: str, user_id: str, *, subtasks: bool = True
    ) -> AsyncIterator[Listener]:
        """A listener of `task_id`'s changes, for as long as the context lasts; `subtasks`:
        whether this watcher wants the subtasks that change (shared rounds read them only
        while some watcher does)."""
        if self._per_user.get(user_id, 0) >= self._max_per_user:
            raise errors.ResourceExhausted(
                f"at most {self._max_per_user} concurrent watches per user",
                reason="TOO_MANY_WATCHES",
                retry_after=5.0,
            )
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        topic = self._topics.get(task_id)
        new_topic = topic is None
        if topic is None:
            topic = self._topics[task_id] = _Topic()
        listener = Listener(topic, subtasks)
        topic.listeners.add(listener)
        if new_topic:
            await self._subscribe(task_id, topic)
        try:
            yield listener
        finally:
            topic.listeners.discard(listener)
            left = self._per_user[user_id] - 1
            if left:
                self._per_user[user_id] = left
            else:
                del self._per_user[user_id]
            if not topic.listeners and self._topics.get(task_id) is topic:
                del self._topics[task_id]
                if topic.subscription is not None:
                    with contextlib.suppress(Exception):
                        await topic.subscription.unsubscribe()

    async def _subscribe(self, task_id: str, topic: _Topic) -> None:
        async def on_change(msg: Msg) -> None:
            try:
                version: int | None = int(msg.data)
            except ValueError:
                version = None
            self._changed(task_id, version)

        try:
            subscription = await self._nc.subscribe(bus.task_changes_subject(task_id), cb=on_change)
        except Exception:
            log.warning("watch_subscribe_failed", task_id=task_id)
            return
        if topic.listeners and self._topics.get(task_id) is topic:
            topic.subscription = subscription
        else:  # everyone left while we subscribed
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
