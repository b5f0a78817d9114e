"""The fold as functions: `collapse` on its own, and `collapse` + `apply` against a real
PostgreSQL (rows written with the store, no server, no bus). Sub-second checks of the rules
the fault scenarios rely on: first terminal event wins, progress only moves forward, a
repeat changes nothing, another attempt is fenced off, counters move by real transitions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import seed
from seed import K
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.imagegen.v1 import jobs_pb2
from tasks import fold, model, store

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SID, TID = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with seed.migrated_engine(database_url) as engine:
        yield engine


async def _fold(conn: AsyncConnection, events: Sequence[jobs_pb2.SubtaskEvent]) -> fold.Outcome:
    return await fold.apply(conn, fold.collapse(events))


async def _task(conn: AsyncConnection, task_id: str) -> model.Task:
    found = await store.get_task(conn, task_id)
    assert found is not None
    return found


def _failed(sid: str, tid: str, *, will_retry: bool, **kw: Any) -> jobs_pb2.SubtaskEvent:
    error = jobs_pb2.JobError(type="BAD", message="it broke", retryable=will_retry)
    return seed.event(sid, tid, K.SUBTASK_EVENT_KIND_FAILED, error=error, will_retry=will_retry,
                      **kw)  # fmt: skip


def test_collapse_first_terminal_wins_and_newest_progress_carries() -> None:
    """Per (subtask, attempt): the first terminal event decides (a later CANCELLED does not
    undo a SUCCEEDED), progress comes from the newest (delivery, sequence), the start time
    is the earliest event's."""
    events = [
        seed.event(SID, TID, K.SUBTASK_EVENT_KIND_PROGRESS, sequence=5, step=5, total_steps=10,
                   at=T0 + dt.timedelta(seconds=5)),
        seed.event(SID, TID, K.SUBTASK_EVENT_KIND_STARTED, sequence=1, at=T0),
        seed.event(SID, TID, K.SUBTASK_EVENT_KIND_PROGRESS, sequence=3, step=3, total_steps=10),
        seed.event(SID, TID, K.SUBTASK_EVENT_KIND_SUCCEEDED, sequence=6, result=seed.result(SID)),
        seed.event(SID, TID, K.SUBTASK_EVENT_KIND_CANCELLED, sequence=7),
    ]  # fmt: skip
    [change] = fold.collapse(events)
    assert change.terminal == model.SUCCEEDED
    assert (change.step, change.total_steps) == (5, 10)
    assert change.start_time == T0
    assert (change.delivery, change.sequence) == (1, 7)
    assert change.error_type is None and change.result is not None


def test_collapse_keeps_attempts_apart_and_retrying_failures_open() -> None:
    """Two attempts of one subtask are two changes; a FAILED that will be retried records
    the error but is not terminal."""
    events = [
        _failed(SID, TID, will_retry=True),
        seed.event(SID, TID, K.SUBTASK_EVENT_KIND_SUCCEEDED, attempt=2),
    ]
    first, second = fold.collapse(events)
    assert (first.attempt, first.terminal, first.error_type) == (1, None, "BAD")
    assert (second.attempt, second.terminal) == (2, model.SUCCEEDED)


def test_event_problem_names_events_that_can_never_fold() -> None:
    """Malformed ids, attempt 0 and NUL characters are refused before any SQL runs."""
    ok = seed.event(SID, TID, K.SUBTASK_EVENT_KIND_STARTED)
    assert fold.event_problem(ok) is None
    cases = {
        "subtask_id is not a UUID": seed.event("nope", TID, K.SUBTASK_EVENT_KIND_STARTED),
        "canonical": seed.event(SID.replace("-", ""), TID, K.SUBTASK_EVENT_KIND_STARTED),
        "attempt": seed.event(SID, TID, K.SUBTASK_EVENT_KIND_STARTED, attempt=0),
        "U+0000": _failed(SID, TID, will_retry=False, worker_id="w\x00"),
    }
    for expected, bad in cases.items():
        problem = fold.event_problem(bad)
        assert problem is not None and expected in problem, (expected, problem)


async def test_apply_moves_rows_and_counters_by_real_transitions(engine: AsyncEngine) -> None:
    """One batch: a started subtask runs, a succeeded one stores its result, a failed one
    fails; the task counts exactly that, is running, and its version moved once."""
    async with engine.begin() as conn:
        task, (s1, s2, s3) = await seed.task(conn, values=("a", "b", "c"))
        outcome = await _fold(conn, [
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_STARTED),
            seed.event(s2, task.id, K.SUBTASK_EVENT_KIND_STARTED),
            seed.event(s2, task.id, K.SUBTASK_EVENT_KIND_SUCCEEDED, sequence=2,
                       result=seed.result(s2)),
            _failed(s3, task.id, will_retry=False),
        ])  # fmt: skip
        after = await _task(conn, task.id)
        assert await seed.subtask_states(conn, task.id) == [
            model.RUNNING, model.SUCCEEDED, model.FAILED,
        ]  # fmt: skip
        stored = await store.get_subtask(conn, s2)
    assert outcome.versions == {task.id: after.version} and after.version == task.version + 1
    assert outcome.ended == 2
    counts = (after.running_count, after.succeeded_count, after.failed_count)
    assert counts == (1, 1, 1)
    assert after.state == model.RUNNING and after.start_time is not None
    assert stored is not None and stored.object_name == f"tasks/x/{s2}.png"
    assert stored.render_ms == 250 and stored.error_type is None


async def test_repeated_events_change_nothing(engine: AsyncEngine) -> None:
    """The same events folded again (redelivered, or published twice) move no row, no
    counter and no version."""
    async with engine.begin() as conn:
        task, (s1, s2) = await seed.task(conn, values=("a", "b"))
        events = [
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_SUCCEEDED, result=seed.result(s1)),
            seed.event(s2, task.id, K.SUBTASK_EVENT_KIND_STARTED),
        ]
        await _fold(conn, events)
        before = await _task(conn, task.id)
        again = await _fold(conn, events)
        after = await _task(conn, task.id)
    assert again.versions == {} and again.ended == 0
    assert after.version == before.version
    assert (after.succeeded_count, after.running_count) == (1, 1)


async def test_out_of_order_events_never_go_back(engine: AsyncEngine) -> None:
    """A STARTED or CANCELLED that arrives after SUCCEEDED (even with a newer delivery), and
    progress older than what was folded, change nothing: terminal stays terminal and the
    step never goes back."""
    async with engine.begin() as conn:
        task, (s1, s2) = await seed.task(conn, values=("a", "b"))
        await _fold(conn, [
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_SUCCEEDED, sequence=5),
            seed.event(s2, task.id, K.SUBTASK_EVENT_KIND_PROGRESS, sequence=5, step=5,
                       total_steps=10),
        ])  # fmt: skip
        late = await _fold(conn, [
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_STARTED, sequence=1),
            seed.event(s2, task.id, K.SUBTASK_EVENT_KIND_PROGRESS, sequence=3, step=3,
                       total_steps=10),
        ])  # fmt: skip
        # Newer by (delivery, sequence), but the subtask has ended: still nothing.
        newer = await _fold(conn, [
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_STARTED, delivery=2, sequence=99),
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_CANCELLED, delivery=2, sequence=100),
        ])  # fmt: skip
        second = await store.get_subtask(conn, s2)
        after = await _task(conn, task.id)
        assert await seed.subtask_states(conn, task.id) == [model.SUCCEEDED, model.RUNNING]
    assert late.versions == {} and newer.versions == {}
    assert second is not None and second.step == 5
    assert (after.succeeded_count, after.running_count) == (1, 1)


async def test_events_of_another_attempt_are_fenced_off(engine: AsyncEngine) -> None:
    """A zombie worker's SUCCEEDED for attempt 2 of a subtask at attempt 1 changes nothing."""
    async with engine.begin() as conn:
        task, (s1,) = await seed.task(conn, values=("a",))
        outcome = await _fold(
            conn, [seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_SUCCEEDED, attempt=2)]
        )
        assert await seed.subtask_states(conn, task.id) == [model.QUEUED]
    assert outcome.versions == {}


async def test_last_terminal_event_finishes_the_task_with_its_state(engine: AsyncEngine) -> None:
    """Running subtasks that end leave the running count; when the last one ends, the
    task's state follows from its counters (one success, one failure: partially failed)
    and it gets a finish time."""
    async with engine.begin() as conn:
        task, (s1, s2) = await seed.task(conn, values=("a", "b"))
        await _fold(conn, [seed.event(s, task.id, K.SUBTASK_EVENT_KIND_STARTED) for s in (s1, s2)])
        await _fold(conn, [seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_SUCCEEDED, sequence=2)])
        running = await _task(conn, task.id)
        await _fold(conn, [_failed(s2, task.id, will_retry=False)])
        done = await _task(conn, task.id)
    assert running.state == model.RUNNING and running.finish_time is None
    assert running.running_count == 1
    assert done.state == model.PARTIALLY_FAILED and done.finish_time is not None
    assert (done.succeeded_count, done.failed_count, done.running_count) == (1, 1, 0)


async def test_webhooks_recorded_for_each_finished_subtask_and_the_task(
    engine: AsyncEngine,
) -> None:
    """With a webhook for both events, finishing two subtasks in one batch records two
    subtask_finished deliveries and one task_finished, in the fold's transaction."""
    async with engine.begin() as conn:
        task, (s1, s2) = await seed.task(conn, webhook_url="https://example.test/hook")
        outcome = await _fold(conn, [
            seed.event(s1, task.id, K.SUBTASK_EVENT_KIND_SUCCEEDED),
            seed.event(s2, task.id, K.SUBTASK_EVENT_KIND_CANCELLED),
        ])  # fmt: skip
        events = await seed.webhook_events(conn, task.id)
    assert outcome.webhooks == 3
    assert sorted(events) == ["subtask_finished", "subtask_finished", "task_finished"]
