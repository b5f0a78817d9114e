"""The dispatch window rule and the fair order, as a function and as store queries against
a real PostgreSQL (rows written directly: no server, no bus)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import db
from tasks import app, model, ranking, store
from tasks import testing as h

Q = "standard"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database (no NATS needed: nothing here publishes)."""
    cfg = h.make_config(database_url, "nats://127.0.0.1:1")
    app.migrate(cfg)
    engine = db.create_engine(cfg, "test-ranking")
    yield engine
    await engine.dispose()


async def _task(
    conn: AsyncConnection,
    owner: str,
    *,
    waiting: int,
    in_flight: int = 0,
    priority: int = 0,
    age_seconds: float = 0.0,
    paused: bool = False,
) -> str:
    """A task of `owner` with `in_flight` queued subtasks and `waiting` unsent outbox rows
    (created `age_seconds` ago); returns its id."""
    task_id = str(uuid.uuid4())
    await conn.execute(
        text(
            "INSERT INTO tasks.tasks (id, owner_id, task_name, prompt_template, variables, "
            "zip_groups, images_per_combination, ratio, use_polish, queue, negative_prompt, "
            "output_format, priority, state, total_images, paused, create_time) VALUES "
            "(CAST(:id AS uuid), :o, 't', 'p', CAST('{}' AS jsonb), CAST('[]' AS jsonb), 1, "
            "'1:1', false, :q, '', 'png', :p, 'pending', :n, :paused, "
            "now() - make_interval(secs => :age))"
        ),
        {
            "id": task_id,
            "o": owner,
            "q": Q,
            "p": priority,
            "n": waiting + in_flight,
            "paused": paused,
            "age": age_seconds,
        },
    )
    for idx in range(waiting + in_flight):
        subtask_id = str(uuid.uuid4())
        state = model.QUEUED if idx < in_flight else model.PENDING
        await conn.execute(
            text(
                "INSERT INTO tasks.subtasks (id, task_id, idx, owner_id, variable_values, "
                "prompt, negative_prompt, ratio, width, height, seed, use_polish, queue, "
                "output_format, state) VALUES (CAST(:id AS uuid), CAST(:t AS uuid), :i, :o, "
                "CAST(:v AS jsonb), 'p', '', '1:1', 64, 64, 1, false, :q, 'png', :s)"
            ),
            {"id": subtask_id, "t": task_id, "i": idx, "o": owner, "v": json.dumps({}), "q": Q,
             "s": state},
        )  # fmt: skip
        await conn.execute(
            text(
                "INSERT INTO tasks.outbox (subtask_id, task_id, owner_id, queue, priority, "
                "attempt, generation, create_time, sent_time) VALUES (CAST(:s AS uuid), "
                "CAST(:t AS uuid), :o, :q, :p, 1, 0, now() - make_interval(secs => :age), "
                "CASE WHEN :sent THEN now() END)"
            ),
            {"s": subtask_id, "t": task_id, "o": owner, "q": Q, "p": priority,
             "age": age_seconds, "sent": idx < in_flight},
        )  # fmt: skip
    return task_id


async def _order(conn: AsyncConnection, limit: int = 50, aging: float = 0.0) -> list[str]:
    return [str(r["task_id"]) for r in await ranking.fair_order(conn, Q, limit, aging)]


def test_window_follows_live_slots_and_throughput() -> None:
    """The window is the live slots plus `lead` seconds of their throughput (2 slots at
    0.25 s with 0.5 s lead: 2 + 4), capped by the maximum for instant renderers, and small
    and fixed when no worker is live."""
    assert ranking.window(2, 0.25, lead=0.5, unserved=10, maximum=1000) == 6
    assert ranking.window(2, 5.0, lead=0.5, unserved=10, maximum=1000) == 3
    assert ranking.window(8, 0.0, lead=0.5, unserved=10, maximum=1000) == 1000
    assert ranking.window(0, 0.25, lead=0.5, unserved=10, maximum=1000) == 10
    assert ranking.window(0, 0.25, lead=0.5, unserved=10, maximum=5) == 5


async def test_other_owner_goes_before_the_big_owners_next_job(engine: AsyncEngine) -> None:
    """An owner with nothing in flight is served before an owner with jobs in flight,
    although the big task's rows are older and have lower ids."""
    async with engine.begin() as conn:
        big = await _task(conn, "alice", waiting=20, in_flight=2, age_seconds=60)
        small = await _task(conn, "bob", waiting=1)
        order = await _order(conn)
    assert order[0] == small
    assert order[1:] == [big] * 20


async def test_owners_take_turns(engine: AsyncEngine) -> None:
    """Three owners with equal work in flight alternate one job each, round robin."""
    async with engine.begin() as conn:
        tasks = [await _task(conn, owner, waiting=3, in_flight=1) for owner in ("a", "b", "c")]
        order = await _order(conn)
    assert order == tasks * 3


async def test_equal_turns_go_to_the_owner_served_longest_ago(engine: AsyncEngine) -> None:
    """Between owners with the same turn, the one whose latest job in flight was sent
    longest ago goes first, not the one with the older rows: otherwise every tie would
    favour the first task's owner, round after round."""
    async with engine.begin() as conn:
        first = await _task(conn, "alice", waiting=2, in_flight=1, age_seconds=60)
        second = await _task(conn, "bob", waiting=2, in_flight=1)
        for owner, sent_ago in (("alice", 1), ("bob", 10)):
            await conn.execute(
                text(
                    "UPDATE tasks.subtasks SET queue_time = now() - make_interval(secs => :s) "
                    "WHERE owner_id = :o AND state = 'queued'"
                ),
                {"o": owner, "s": sent_ago},
            )
        order = await _order(conn)
    assert order == [second, first, second, first]


async def test_owners_small_task_is_not_stuck_behind_their_big_one(engine: AsyncEngine) -> None:
    """Within one owner, tasks take turns too: the owner's new small task goes next
    after the owner's big task that already has jobs in flight."""
    async with engine.begin() as conn:
        big = await _task(conn, "alice", waiting=10, in_flight=3)
        small = await _task(conn, "alice", waiting=2)
        order = await _order(conn)
    assert order[:2] == [small, small]
    assert order[2:] == [big] * 10


async def test_priority_first_then_aging_lifts_waiting_work(engine: AsyncEngine) -> None:
    """A higher priority goes first whatever the owners' turns; with aging, a priority-0
    task that has waited 100 s (10 s per level) is ranked above fresh priority-9 work."""
    async with engine.begin() as conn:
        low = await _task(conn, "bob", waiting=2, age_seconds=100)
        high = await _task(conn, "alice", waiting=3, in_flight=5, priority=9)
        assert await _order(conn) == [high] * 3 + [low] * 2
        assert await _order(conn, aging=10.0) == [low] * 2 + [high] * 3


async def test_paused_task_is_held_and_position_follows_the_order(engine: AsyncEngine) -> None:
    """A paused task's rows are not in the order; a waiting task's queue position counts
    the published jobs not started and the rows the fair order puts before it."""
    async with engine.begin() as conn:
        held = await _task(conn, "carol", waiting=5, paused=True)
        big = await _task(conn, "alice", waiting=30, in_flight=4)
        small = await _task(conn, "bob", waiting=1)
        assert held not in await _order(conn)
        tasks = {t.id: t for t in [await store.get_task(conn, i) for i in (big, small, held)] if t}
        assert await store.queue_position(conn, tasks[small], 0.0) == 4
        assert await store.queue_position(conn, tasks[big], 0.0) == 1
        assert await ranking.waiting_ahead(conn, tasks[held], 0.0) is None
