"""What every fault scenario checks afterwards, straight from PostgreSQL and JetStream.

The services' own answers are not trusted here: the checker reads the `tasks` schema with
psycopg and lists the `images` object store with nats-py, so a bug that makes an RPC lie
cannot hide a broken invariant (G1, G2).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import psycopg
from nats.js.errors import NotFoundError
from psycopg.rows import dict_row

from kiln.common import bus

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
T = TypeVar("T")


def rows(database_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    """The rows of one query, each as a dict."""
    with psycopg.connect(database_url, connect_timeout=5, row_factory=dict_row) as conn:
        return list(conn.execute(query, params).fetchall())


def scalar(database_url: str, query: str, *params: Any) -> Any:
    """The first column of the first row of one query."""
    found = rows(database_url, query, *params)
    return next(iter(found[0].values())) if found else None


def subtask_states(database_url: str, task_id: str | None = None) -> collections.Counter[str]:
    """Current (not superseded) subtasks by state, of one task or of all."""
    found = rows(
        database_url,
        "SELECT state, count(*) AS n FROM tasks.subtasks WHERE NOT superseded"
        " AND (%s::uuid IS NULL OR task_id = %s::uuid) GROUP BY state",
        task_id,
        task_id,
    )
    return collections.Counter({r["state"]: int(r["n"]) for r in found})


def wait_until(
    predicate: Callable[[], bool], *, within: float, what: str, every: float = 0.1
) -> float:
    """Polls `predicate` until it holds; returns the seconds it took, fails after `within`."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(every)


def all_finished(database_url: str) -> bool:
    """Whether every current subtask is terminal and every task has left pending/running."""
    busy = scalar(
        database_url,
        "SELECT (SELECT count(*) FROM tasks.subtasks WHERE NOT superseded"
        "        AND state NOT IN ('succeeded', 'failed', 'cancelled'))"
        "     + (SELECT count(*) FROM tasks.tasks WHERE state IN ('pending', 'running'))",
    )
    return bool(busy == 0)


def wait_all_finished(database_url: str, within: float) -> float:
    """Blocks until `all_finished`; returns the seconds it took."""
    return wait_until(
        lambda: all_finished(database_url), within=within, what="every subtask terminal"
    )


def run(coro: Awaitable[T]) -> T:
    """Runs one coroutine from a synchronous test (the fault tests drive blocking stubs)."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def _object_info(nats_url: str, name: str) -> Any:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        store = await nc.jetstream().object_store(bus.IMAGES_STORE)
        try:
            return await store.get_info(name)
        except NotFoundError:
            return None
    finally:
        await nc.close()


def object_info(nats_url: str, name: str) -> Any:
    """One object's info read directly (not through the listing), or None when missing."""
    return run(_object_info(nats_url, name))


async def _list_images(nats_url: str) -> list[Any]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        store = await nc.jetstream().object_store(bus.IMAGES_STORE)
        try:
            return list(await store.list(ignore_deletes=True))
        except NotFoundError:
            return []
    finally:
        await nc.close()


def list_images(nats_url: str) -> list[Any]:
    """Every live object of the `images` store (ObjectInfo: name, size, digest)."""
    return run(_list_images(nats_url))


async def _stream_messages(nats_url: str, stream: str) -> int:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


def stream_messages(nats_url: str, stream: str = bus.JOBS_STREAM) -> int:
    """Messages in a stream now."""
    return run(_stream_messages(nats_url, stream))


async def _consumer(nats_url: str, stream: str, consumer: str) -> Any:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return await nc.jetstream().consumer_info(stream, consumer)
    finally:
        await nc.close()


def consumer_info(nats_url: str, consumer: str, stream: str = bus.JOBS_STREAM) -> Any:
    """A consumer's state (num_pending, num_ack_pending, num_redelivered...)."""
    return run(_consumer(nats_url, stream, consumer))


def _hex_digest(digest: str | None) -> str | None:
    """The object store's `SHA-256=<base64url>` digest as lowercase hex."""
    if not digest or "=" not in digest:
        return None
    encoded = digest.split("=", 1)[1]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).hex()


def settled(nats_url: str) -> bool:
    """No job left in JOBS and every event folded by the tasks service."""
    progress = consumer_info(nats_url, bus.PROGRESS_CONSUMER, bus.EVENTS_STREAM)
    return (
        stream_messages(nats_url) == 0
        and progress.num_pending == 0
        and progress.num_ack_pending == 0
    )


@dataclasses.dataclass(frozen=True)
class Summary:
    """What the checker saw, for the test's own asserts and for docs/RELIABILITY.md."""

    states: collections.Counter[str]
    tasks: int
    images: int
    max_attempt: int
    max_delivery: int
    max_generation: int


def check_invariants(database_url: str, nats_url: str) -> Summary:
    """Asserts G1/G2 on the whole database: every current subtask terminal, counters equal to
    the terminal rows, no unsent outbox rows, and exactly one stored image (with the recorded
    sha256 and size) per succeeded subtask, none for subtasks that do not exist."""
    subtasks = rows(
        database_url,
        "SELECT id::text AS id, task_id::text AS task_id, state, attempt, generation,"
        " last_delivery, object_name, size_bytes, sha256, superseded FROM tasks.subtasks",
    )
    current = [s for s in subtasks if not s["superseded"]]
    stuck = [s for s in current if s["state"] not in TERMINAL]
    assert not stuck, f"{len(stuck)} subtasks not terminal, e.g. {stuck[:3]}"

    by_task: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for s in current:
        by_task[s["task_id"]][s["state"]] += 1
    tasks = rows(
        database_url,
        "SELECT id::text AS id, state, total_images, succeeded_count, failed_count,"
        " cancelled_count, running_count FROM tasks.tasks",
    )
    for task in tasks:
        seen = by_task[task["id"]]
        counters = (
            task["succeeded_count"],
            task["failed_count"],
            task["cancelled_count"],
            task["running_count"],
            task["total_images"],
        )
        expected = (seen["succeeded"], seen["failed"], seen["cancelled"], 0, seen.total())
        assert counters == expected, f"task {task['id']}: counters {counters} != rows {expected}"
        assert task["state"] not in ("pending", "running"), f"task {task['id']} {task['state']}"

    unsent = scalar(database_url, "SELECT count(*) FROM tasks.outbox WHERE sent_time IS NULL")
    assert unsent == 0, f"{unsent} outbox rows never sent"

    known = {s["id"] for s in subtasks}
    main_objects: dict[str, list[Any]] = collections.defaultdict(list)
    for info in list_images(nats_url):
        # tasks/<task_id>/<subtask_id>.<ext> and tasks/<task_id>/<subtask_id>.thumb.webp
        leaf = info.name.rsplit("/", 1)[-1]
        subtask_id = leaf.split(".", 1)[0]
        assert subtask_id in known, f"image {info.name} belongs to no subtask"
        if not leaf.endswith(".thumb.webp"):
            main_objects[subtask_id].append(info)
    for subtask_id, infos in main_objects.items():
        assert len(infos) == 1, f"subtask {subtask_id} has {len(infos)} images"
    for s in current:
        if s["state"] != "succeeded":
            continue
        infos = main_objects.get(s["id"], [])
        if not infos:
            # A listing can miss an object whose meta was rewritten while it ran (a late
            # duplicate render overwrites the same name): ask for the object itself.
            direct = object_info(nats_url, s["object_name"])
            infos = [direct] if direct is not None else []
        assert len(infos) == 1, f"succeeded subtask {s['id']} has {len(infos)} images"
        info = infos[0]
        assert info.name == s["object_name"], (info.name, s["object_name"])
        assert info.size == s["size_bytes"], f"{info.name}: {info.size} != {s['size_bytes']}"
        digest = _hex_digest(info.digest)
        assert digest is None or digest == s["sha256"], f"{info.name}: stored bytes differ"

    return Summary(
        states=collections.Counter(s["state"] for s in current),
        tasks=len(tasks),
        images=sum(len(v) for v in main_objects.values()),
        max_attempt=max((s["attempt"] for s in current), default=0),
        max_delivery=max((s["last_delivery"] for s in current), default=0),
        max_generation=max((s["generation"] for s in current), default=0),
    )
