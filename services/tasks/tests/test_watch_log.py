"""The shared change log behind WatchTask: one read per change for caught-up watchers, a
re-read for changes during a read, and a private catch-up for a watcher left behind."""

from __future__ import annotations

import asyncio

import pytest

from tasks import watch


def _topic_with(count: int) -> tuple[watch._Topic, list[watch.Listener]]:
    topic = watch._Topic()
    listeners = [watch.Listener(topic) for _ in range(count)]
    topic.listeners.update(listeners)
    for listener in listeners:
        listener.start(0)
    return topic, listeners


class _Task:
    """A task whose version the test moves, read with a count of reads."""

    def __init__(self) -> None:
        self.version = 0
        self.reads: list[int] = []

    async def read(self, after: int) -> watch.Round:
        self.reads.append(after)
        await asyncio.sleep(0.01)
        return watch.Round(after, self.version, content=f"changes after {after}")


async def test_watchers_of_one_change_share_one_read() -> None:
    topic, listeners = _topic_with(50)
    task = _Task()
    task.version = 1
    topic.bump()
    await asyncio.gather(*(listener.wait_and_catch_up(5.0, task.read) for listener in listeners))
    assert task.reads == [0]
    expected = [watch.Round(0, 1, "changes after 0")]
    assert all(listener.rounds() == expected for listener in listeners)


async def test_a_change_during_a_read_is_read_again() -> None:
    topic, (listener,) = _topic_with(1)
    task = _Task()

    async def read(after: int) -> watch.Round:
        if not task.reads:
            task.version = 2
            topic.bump()  # committed while the first read was under way
        return await task.read(after)

    task.version = 1
    topic.bump()
    await listener.wait_and_catch_up(60.0, read)
    assert task.reads == [0]
    # The first read may have missed the change made during it: the next call reads again
    # at once instead of waiting for another change.
    await asyncio.wait_for(listener.wait_and_catch_up(60.0, read), timeout=5.0)
    assert task.reads == [0, 2]


async def test_quiet_task_is_re_read_after_the_refresh_interval() -> None:
    _topic, (listener,) = _topic_with(1)
    task = _Task()
    task.version = 3  # changed without an announcement (another replica's was lost)
    await listener.wait_and_catch_up(0.05, task.read)
    assert task.reads == [0]
    assert [r.version for r in listener.rounds() or []] == [3]


async def test_a_watcher_left_behind_falls_out_of_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "MAX_ROUNDS", 2)
    topic, (fast, slow) = _topic_with(2)
    task = _Task()
    for version in (1, 2, 3):
        task.version = version
        topic.bump()
        await fast.wait_and_catch_up(5.0, task.read)
        fast.cursor = version
    assert [r.version for r in fast.rounds() or []] == []
    assert slow.rounds() is None  # rounds 0->1 were dropped: it must read on its own
    assert [r.after for r in topic.rounds] == [1, 2]


async def test_rounds_every_watcher_passed_are_dropped() -> None:
    topic, listeners = _topic_with(2)
    task = _Task()
    for version in (1, 2):
        task.version = version
        topic.bump()
        await listeners[0].wait_and_catch_up(5.0, task.read)
        for listener in listeners:
            listener.cursor = version
    task.version = 3
    topic.bump()
    await listeners[0].wait_and_catch_up(5.0, task.read)
    assert [r.version for r in topic.rounds] == [3]
