"""WatchTask: snapshot, ordered changes, terminal end, resume, fan-out and cleanup."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


async def _collect(stream: object, into: list[tasks_pb2.WatchTaskResponse]) -> None:
    async for message in stream:  # type: ignore[attr-defined]
        into.append(message)


async def test_watch_from_snapshot_to_terminal(server: h.Running, worker: h.FakeWorker) -> None:
    """A watch starts with a snapshot, sends changes with increasing versions and progress
    that never goes back, streams subtask changes when asked, and ends OK after the final
    state."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c", "d")))).task
    updates: list[tasks_pb2.WatchTaskResponse] = []
    stream = alice.tasks.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=task.id, include_subtasks=True)
    )
    collector = asyncio.create_task(_collect(stream, updates))
    await h.wait_for(lambda: _true(bool(updates)), what="snapshot")
    assert updates[0].snapshot and updates[0].task.state == tasks_pb2.TASK_STATE_PENDING
    for message, job in await worker.fetch_exactly(4):
        await worker.succeed(message, job)
        await asyncio.sleep(0.05)
    await asyncio.wait_for(collector, timeout=10)
    versions = [u.task.version for u in updates]
    assert versions == sorted(versions)
    progress = [u.task.progress for u in updates]
    assert progress == sorted(progress)
    assert updates[-1].task.state == tasks_pb2.TASK_STATE_SUCCEEDED
    finished = {
        u.subtask.id for u in updates if u.subtask.state == tasks_pb2.SUBTASK_STATE_SUCCEEDED
    }
    assert len(finished) == 4


async def _true(value: bool) -> bool:
    return value


async def test_resume_from_version_has_no_gap(server: h.Running, worker: h.FakeWorker) -> None:
    """A watcher that disconnects mid-run and resumes with the last version it saw gets
    every subtask change after it, no regression, and the final state."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(10)]))).task
    jobs = await worker.fetch_exactly(10)
    first: list[tasks_pb2.WatchTaskResponse] = []
    stream = alice.tasks.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=task.id, include_subtasks=True)
    )
    collector = asyncio.create_task(_collect(stream, first))
    for message, job in jobs[:4]:
        await worker.succeed(message, job)
    await h.wait_for(lambda: _true(bool(first) and first[-1].task.succeeded_count == 4), what="40%")
    stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await collector
    last_version = first[-1].task.version
    seen_first = {u.subtask.id for u in first if u.subtask.id}
    for message, job in jobs[4:]:
        await worker.succeed(message, job)  # while nobody watches
    second: list[tasks_pb2.WatchTaskResponse] = []
    await _collect(
        alice.tasks.WatchTask(
            tasks_pb2.WatchTaskRequest(
                task_id=task.id, after_version=last_version, include_subtasks=True
            )
        ),
        second,
    )
    assert all(u.task.version > last_version for u in second)
    assert second[-1].task.state == tasks_pb2.TASK_STATE_SUCCEEDED
    seen_second = {u.subtask.id for u in second if u.subtask.id}
    assert seen_first | seen_second == {j.subtask_id for _, j in jobs}
    assert second[-1].task.succeeded_count == 10


async def test_many_watchers_share_one_subscription_and_clean_up(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """200 watchers of one task cost one subscription on the replica; the per-user watch
    limit holds; one change reaches every watcher; when every client cancels, watchers and
    subscriptions are back to zero within a second."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    (m1, j1), (m2, _j2) = await worker.fetch_exactly(2)
    await worker.event(j1, h.K.SUBTASK_EVENT_KIND_STARTED)

    async def running() -> bool:
        return (await h.get_task(alice, task.id)).running_count == 1

    await h.wait_for(running, what="running")
    hub = server.app.hub
    # The default limit is 50 watches per user: four admins watch 50 times each.
    admins = [server.client(f"admin{i}", role="admin") for i in range(4)]
    request = tasks_pb2.WatchTaskRequest(task_id=task.id)
    streams = [admins[i % 4].tasks.WatchTask(request) for i in range(200)]
    collected: list[list[tasks_pb2.WatchTaskResponse]] = [[] for _ in streams]
    collectors = [
        asyncio.create_task(_collect(s, c)) for s, c in zip(streams, collected, strict=True)
    ]
    await h.wait_for(lambda: _true(hub.watchers == 200), within=30, what="200 watchers")
    assert hub.watched_tasks == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _collect(admins[0].tasks.WatchTask(request), [])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await worker.succeed(m1, j1)
    await h.wait_for(
        lambda: _true(all(any(u.task.succeeded_count == 1 for u in c) for c in collected)),
        within=30,
        what="fan-out",
    )
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*collectors, return_exceptions=True)
    await h.wait_for(
        lambda: _true(hub.watchers == 0 and hub.watched_tasks == 0), within=1.0, what="cleanup"
    )
    await m2.ack()


async def test_watch_sees_changes_folded_by_another_replica(
    server: h.Running, worker: h.FakeWorker, signer: h.TestSigner
) -> None:
    """A watcher on a replica that folds nothing (its consumers are off) still gets every
    change, through the change notifications of the replica that folded it."""
    cfg = h.make_config(
        server.app.config.database_url,
        server.app.config.nats_url,
        TASKS_PROGRESS_ENABLED="false",
        TASKS_DISPATCH_ENABLED="false",
        TASKS_MAINTENANCE_ENABLED="false",
        TASKS_WATCH_REFRESH_SECONDS="60",
    )
    other = await h.start(cfg, signer)
    try:
        alice = server.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
        updates: list[tasks_pb2.WatchTaskResponse] = []
        collector = asyncio.create_task(
            _collect(
                other.client("alice").tasks.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task.id)),
                updates,
            )
        )
        await h.wait_for(lambda: _true(bool(updates)), what="snapshot")
        for message, job in await worker.fetch_exactly(2):
            await worker.succeed(message, job)
        await asyncio.wait_for(collector, timeout=5)
        assert updates[-1].task.state == tasks_pb2.TASK_STATE_SUCCEEDED
    finally:
        await h.stop(other)


async def test_watch_of_someone_elses_task_is_not_found(server: h.Running) -> None:
    """Watching another owner's task is NOT_FOUND, exactly like a task that does not exist."""
    task = (await server.client("alice").tasks.CreateTask(h.create_request())).task
    bob = server.client("bob")
    messages = []
    for task_id in (task.id, "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _collect(bob.tasks.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task_id)), [])
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        messages.append((caught.value.details() or "").replace(task_id, "ID"))
    assert messages[0] == messages[1]


def _final_states(updates: list[tasks_pb2.WatchTaskResponse]) -> dict[str, int]:
    """Each subtask's last state in a stream, from single or batched messages."""
    states: dict[str, int] = {}
    for update in updates:
        for subtask in [update.subtask] if update.HasField("subtask") else update.subtasks:
            states[subtask.id] = subtask.state
    return states


async def test_batched_watch_coalesces_rounds_to_the_same_final_states(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """With batch_subtasks, each message carries many subtask changes (never `subtask`),
    a subtask at most once per message, in increasing task versions, and the stream ends
    in the same subtask and task states as a watcher without batching, which still gets one
    subtask per message."""
    alice = server.client("alice")
    values = [str(i) for i in range(12)]
    task = (await alice.tasks.CreateTask(h.create_request(values=values))).task
    plain: list[tasks_pb2.WatchTaskResponse] = []
    batched: list[tasks_pb2.WatchTaskResponse] = []
    watchers = [
        asyncio.create_task(
            _collect(
                alice.tasks.WatchTask(
                    tasks_pb2.WatchTaskRequest(
                        task_id=task.id, include_subtasks=True, batch_subtasks=batch
                    )
                ),
                into,
            )
        )
        for batch, into in ((False, plain), (True, batched))
    ]
    await h.wait_for(lambda: _true(len(plain) >= 12 and bool(batched)), what="snapshots")
    assert len(batched) == 1 and batched[0].snapshot and len(batched[0].subtasks) == 12
    for message, job in await worker.fetch_exactly(12):
        await worker.succeed(message, job)
    await asyncio.wait_for(asyncio.gather(*watchers), timeout=15)
    assert all(not u.HasField("subtask") for u in batched)
    assert all(len({s.id for s in u.subtasks}) == len(u.subtasks) for u in batched)
    versions = [u.task.version for u in batched]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert len(batched) <= len(plain)
    assert all(not u.subtasks for u in plain)  # the old form is unchanged
    assert _final_states(batched) == _final_states(plain)
    assert set(_final_states(batched).values()) == {tasks_pb2.SUBTASK_STATE_SUCCEEDED}
    assert batched[-1].task == plain[-1].task
    assert batched[-1].task.state == tasks_pb2.TASK_STATE_SUCCEEDED


async def test_batched_resume_sends_what_was_missed_once_in_its_latest_state(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """A batched watch resumed from an early version gets every subtask changed since, each
    once and in its latest state, in one message; without batching the same resume is one
    message per change."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c", "d")))).task
    for message, job in await worker.fetch_exactly(4):
        await worker.succeed(message, job)
    await h.wait_for(lambda: _done(alice, task.id), within=10, what="the task to finish")
    resumed: dict[bool, list[tasks_pb2.WatchTaskResponse]] = {False: [], True: []}
    for batch, into in resumed.items():
        request = tasks_pb2.WatchTaskRequest(
            task_id=task.id, after_version=1, include_subtasks=True, batch_subtasks=batch
        )
        await _collect(alice.tasks.WatchTask(request), into)
    (only,) = resumed[True]
    assert only.snapshot and len(only.subtasks) == 4
    assert {s.state for s in only.subtasks} == {tasks_pb2.SUBTASK_STATE_SUCCEEDED}
    assert len(resumed[False]) >= 4
    assert _final_states(resumed[False]) == _final_states(resumed[True])


async def _done(client: h.Client_, task_id: str) -> bool:
    return (await h.get_task(client, task_id)).state == tasks_pb2.TASK_STATE_SUCCEEDED


async def test_large_batched_snapshot_is_split_and_only_its_last_piece_has_the_task(
    server: h.Running,
) -> None:
    """A 600-subtask snapshot comes as 500 + 100 subtasks; only the last message carries
    the task, so a client resuming from the last version it saw cannot skip a piece."""
    alice = server.client("alice")
    values = [str(i) for i in range(600)]
    task = (await alice.tasks.CreateTask(h.create_request(values=values))).task
    stream = alice.tasks.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=task.id, include_subtasks=True, batch_subtasks=True)
    )
    first, second = await stream.read(), await stream.read()
    stream.cancel()
    assert (first.snapshot, second.snapshot) == (True, True)
    assert (len(first.subtasks), len(second.subtasks)) == (500, 100)
    assert not first.HasField("task") and second.task.id == task.id
    assert len({s.id for s in [*first.subtasks, *second.subtasks]}) == 600


async def test_batching_without_subtasks_is_invalid_argument(server: h.Running) -> None:
    """batch_subtasks without include_subtasks is refused, naming the field."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request())).task
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _collect(
            alice.tasks.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task.id, batch_subtasks=True)),
            [],
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch_subtasks" in str(caught.value.details())


async def test_watchers_opening_at_once_all_get_the_snapshot_and_every_change(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """Thirty watchers opening one task at the same moment (they share opening reads) each
    get the snapshot and then every change to the end, while the task runs."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(6)]))).task
    jobs = await worker.fetch_exactly(6)
    await worker.succeed(*jobs[0])  # a change just before the watchers open
    streams: list[list[tasks_pb2.WatchTaskResponse]] = [[] for _ in range(30)]
    request = tasks_pb2.WatchTaskRequest(
        task_id=task.id, include_subtasks=True, batch_subtasks=True
    )
    watchers = [
        asyncio.create_task(_collect(alice.tasks.WatchTask(request), into)) for into in streams
    ]
    for message, job in jobs[1:]:
        await worker.succeed(message, job)
    await asyncio.wait_for(asyncio.gather(*watchers), timeout=20)
    for updates in streams:
        assert updates[0].snapshot
        assert updates[-1].task.state == tasks_pb2.TASK_STATE_SUCCEEDED
        final = _final_states(updates)
        assert len(final) == 6 and set(final.values()) == {tasks_pb2.SUBTASK_STATE_SUCCEEDED}


async def test_subtask_watcher_joining_task_only_watchers_gets_every_subtask_change(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """Shared rounds read for task-only watchers skip the subtasks; a watcher that wants
    them and joins mid-run (plain and batched) still gets every subtask's final state."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(6)]))).task
    jobs = await worker.fetch_exactly(6)
    plain: list[tasks_pb2.WatchTaskResponse] = []
    task_only = asyncio.create_task(
        _collect(alice.tasks.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task.id)), plain)
    )
    await h.wait_for(lambda: _true(bool(plain)), what="task-only snapshot")
    for message, job in jobs[:2]:
        await worker.succeed(message, job)
    await h.wait_for(
        lambda: _true(bool(plain) and plain[-1].task.succeeded_count == 2), what="two done"
    )
    joined: dict[bool, list[tasks_pb2.WatchTaskResponse]] = {False: [], True: []}
    watchers = [
        asyncio.create_task(
            _collect(
                alice.tasks.WatchTask(
                    tasks_pb2.WatchTaskRequest(
                        task_id=task.id, include_subtasks=True, batch_subtasks=batch
                    )
                ),
                joined[batch],
            )
        )
        for batch in (False, True)
    ]
    await h.wait_for(lambda: _true(all(joined.values())), what="subtask snapshots")
    for message, job in jobs[2:]:
        await worker.succeed(message, job)
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(task_only, *watchers), timeout=10)
    assert plain[-1].task.state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert all(not u.HasField("subtask") and not u.subtasks for u in plain)
    for updates in joined.values():
        states = _final_states(updates)
        assert len(states) == 6
        assert set(states.values()) == {tasks_pb2.SUBTASK_STATE_SUCCEEDED}
