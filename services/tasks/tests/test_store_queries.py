"""The store's queries against a real PostgreSQL, called directly (rows written with the
store itself; no server, no bus): filters and keyset paging, cancelling, retrying and the
task state derived from its counters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import seed
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tasks import model, store


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with seed.migrated_engine(database_url) as engine:
        yield engine


async def test_list_tasks_filters_and_pages_newest_first(engine: AsyncEngine) -> None:
    """Owner, state, tag and search filters; pages of two keyed on (create_time, id) walk
    every task once, newest first; deleted tasks are hidden; search treats % and _ as
    themselves."""
    async with engine.begin() as conn:
        made = [(await seed.task(conn, name=f"job {i}", tags=("blue",) if i % 2 else ()))[0]
                for i in range(5)]  # fmt: skip
        literal = (await seed.task(conn, name="100% done"))[0]
        await seed.task(conn, owner="bob", name="job of bob")
        await store.soft_delete(conn, made[0].id)
        # One transaction gives every row the same now(): space them out, oldest first.
        await conn.execute(
            text("UPDATE tasks.tasks SET create_time = create_time "
                 "- make_interval(secs => 100 - CAST(substring(task_name from '[0-9]+') AS int))"
                 " WHERE task_name LIKE 'job _'")
        )  # fmt: skip

        async def listed(**kw: object) -> list[str]:
            args: dict[str, object] = {"owner_id": "alice", "states": [], "tag": "",
                                       "search": "", "after": None, "limit": 100}  # fmt: skip
            args.update(kw)
            return [t.task_name for t in await store.list_tasks(conn, **args)]  # type: ignore[arg-type]

        everything = await listed()
        assert "job 0" not in everything and "job of bob" not in everything
        assert everything == ["100% done", "job 4", "job 3", "job 2", "job 1"]
        assert "job of bob" in await listed(owner_id=None)
        assert await listed(tag="blue") == ["job 3", "job 1"]
        assert await listed(search="100%") == ["100% done"]
        assert await listed(search="1_0") == []
        assert await listed(states=[model.RUNNING]) == []
        pages: list[str] = []
        after = None
        while True:
            page = await store.list_tasks(conn, owner_id="alice", states=[], tag="", search="",
                                          after=after, limit=2)  # fmt: skip
            pages += [t.task_name for t in page]
            if len(page) < 2:
                break
            assert page[-1].create_time is not None
            after = (page[-1].create_time, page[-1].id)
    assert pages == everything
    assert everything[0] == literal.task_name


async def test_list_subtasks_pages_by_index_and_filters(engine: AsyncEngine) -> None:
    """Current subtasks in index order after `after_index`, filtered by state and by
    variable values (a JSON containment)."""
    async with engine.begin() as conn:
        task, ids = await seed.task(conn, values=("a", "b", "c", "d"))
        await seed.set_states(conn, ids[2:], model.RUNNING)

        async def listed(**kw: object) -> list[int]:
            args: dict[str, object] = {"states": [], "variables": {}, "after_index": -1,
                                       "limit": 100}  # fmt: skip
            args.update(kw)
            found = await store.list_subtasks(conn, task.id, **args)  # type: ignore[arg-type]
            return [s.idx for s in found]

        assert await listed() == [0, 1, 2, 3]
        assert await listed(after_index=1, limit=1) == [2]
        assert await listed(states=[model.RUNNING]) == [2, 3]
        assert await listed(variables={"color": "b"}) == [1]
        assert await listed(variables={"color": "z"}) == []


async def test_cancel_waiting_leaves_running_and_finished_alone(engine: AsyncEngine) -> None:
    """Cancelling drops the task's unsent outbox rows and cancels its pending and queued
    subtasks only; running and finished ones stay as they are."""
    async with engine.begin() as conn:
        task, ids = await seed.task(conn, values=("a", "b", "c", "d"), state=model.PENDING)
        assert await store.enqueue_pending(conn, task.id, 0) == 4
        await seed.set_states(conn, ids[1:2], model.QUEUED)
        await seed.set_states(conn, ids[2:3], model.RUNNING)
        await seed.set_states(conn, ids[3:], model.SUCCEEDED)
        cancelled = await store.cancel_waiting(conn, task.id)
        states = await seed.subtask_states(conn, task.id)
        outbox = await conn.scalar(
            text("SELECT count(*) FROM tasks.outbox WHERE task_id = CAST(:t AS uuid)"),
            {"t": task.id},
        )
    assert sorted(cancelled) == sorted(ids[:2])
    assert states == [model.CANCELLED, model.CANCELLED, model.RUNNING, model.SUCCEEDED]
    assert outbox == 0


async def test_retry_supersedes_failed_and_cancelled_with_new_attempts(
    engine: AsyncEngine,
) -> None:
    """Retrying replaces each failed or cancelled subtask by a pending row with the next
    attempt and `retried_from`; the task's counters drop the replaced rows and it runs
    again; a second retry finds nothing."""
    async with engine.begin() as conn:
        task, ids = await seed.task(conn, values=("a", "b", "c"))
        await seed.set_states(conn, ids[:1], model.SUCCEEDED)
        await seed.set_states(conn, ids[1:2], model.FAILED)
        await seed.set_states(conn, ids[2:], model.CANCELLED)
        await store.bump_task(conn, task.id, succeeded=1, failed=1, cancelled=1, started=True)
        await store.refresh_state(conn, [task.id])
        failed, cancelled, new_ids = await store.retry_subtasks(conn, task.id)
        await store.reopen_task(conn, task.id, failed, cancelled)
        reopened = await store.get_task(conn, task.id)
        fresh = [await store.get_subtask(conn, i) for i in new_ids]
        again = await store.retry_subtasks(conn, task.id)
        states = await seed.subtask_states(conn, task.id)
    assert (failed, cancelled, len(new_ids)) == (1, 1, 2)
    assert {s.retried_from for s in fresh if s} == set(ids[1:])
    assert all(s is not None and s.attempt == 2 and s.state == model.PENDING for s in fresh)
    assert reopened is not None and reopened.state == model.RUNNING
    assert (reopened.failed_count, reopened.cancelled_count, reopened.finish_time) == (0, 0, None)
    assert again == (0, 0, [])
    assert states == [model.SUCCEEDED, model.PENDING, model.PENDING]


@pytest.mark.parametrize(
    ("succeeded", "failed", "cancelled", "state"),
    [
        (2, 0, 0, model.SUCCEEDED),
        (1, 1, 0, model.PARTIALLY_FAILED),
        (1, 0, 1, model.PARTIALLY_FAILED),
        (0, 2, 0, model.FAILED),
        (0, 1, 1, model.FAILED),
        (0, 0, 2, model.CANCELLED),
        (1, 0, 0, model.RUNNING),
    ],
)
async def test_refresh_state_derives_the_task_state_once(
    engine: AsyncEngine, succeeded: int, failed: int, cancelled: int, state: str
) -> None:
    """The task state follows from its counters; `finished_now` is true only the first
    time the task becomes complete."""
    async with engine.begin() as conn:
        task, _ = await seed.task(conn, values=("a", "b"))
        await store.bump_task(conn, task.id, succeeded=succeeded, failed=failed,
                              cancelled=cancelled, started=True)  # fmt: skip
        [(derived, finished_now)] = await store.refresh_state(conn, [task.id])
        [(_, finished_again)] = await store.refresh_state(conn, [task.id])
    complete = succeeded + failed + cancelled == 2
    assert derived.state == state
    assert finished_now is complete and finished_again is False
    assert (derived.finish_time is not None) is complete


async def test_request_id_and_active_count_are_per_owner(engine: AsyncEngine) -> None:
    """A request id finds only its owner's task; active tasks count pending and running
    ones of the owner, not deleted or finished ones."""
    async with engine.begin() as conn:
        mine, _ = await seed.task(conn, request_id="r-1")
        await seed.task(conn, owner="bob", request_id="r-1")
        done, _ = await seed.task(conn)
        gone, _ = await seed.task(conn)
        await store.bump_task(conn, done.id, succeeded=2, started=True)
        await store.refresh_state(conn, [done.id])
        await store.soft_delete(conn, gone.id)
        found = await store.find_by_request_id(conn, "alice", "r-1")
        assert await store.find_by_request_id(conn, "alice", "r-2") is None
        assert await store.count_active(conn, "alice") == 1
    assert found is not None and found.id == mine.id
