"""Events that can never fold are terminated on their own; their batch and consumer go on."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from kiln.common import bus, subtask_events
from kiln.common.testing import NatsServer, consumers
from kiln.imagegen.v1 import jobs_pb2
from kiln.tasks.v1 import tasks_pb2
from tasks import fold
from tasks import testing as h

K = h.K


def _rejected(reason: str) -> float:
    value = REGISTRY.get_sample_value("kiln_tasks_events_rejected_total", {"reason": reason})
    return value or 0.0


async def _consumer_settled(worker: h.FakeWorker) -> bool:
    return await consumers.caught_up(worker.js, bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER)


async def _succeeded(client: h.Client_, task_id: str) -> bool:
    task = await h.get_task(client, task_id)
    return task.state == tasks_pb2.TASK_STATE_SUCCEEDED


def _event(**fields: object) -> jobs_pb2.SubtaskEvent:
    event = jobs_pb2.SubtaskEvent(
        subtask_id=str(uuid.uuid4()), attempt=1, kind=K.SUBTASK_EVENT_KIND_STARTED
    )
    for name, value in fields.items():
        setattr(event, name, value)
    return event


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"subtask_id": "not-a-uuid"}, "subtask_id is not a UUID"),
        ({"subtask_id": uuid.uuid4().hex}, "subtask_id is not a UUID in canonical form"),
        ({"attempt": 0}, "attempt must be at least 1"),
        ({"worker_id": "w\x00"}, "a text field contains U+0000"),
    ],
)
def test_event_problem_names_what_cannot_fold(fields: dict[str, object], problem: str) -> None:
    """fold.event_problem says why an event can never fold."""
    assert fold.event_problem(_event(**fields)) == problem


def test_event_problem_accepts_a_worker_event() -> None:
    """A well-formed event passes fold.event_problem, including an out-of-range-free time."""
    event = _event()
    event.time.GetCurrentTime()
    assert fold.event_problem(event) is None
    event.time.seconds = 10**15  # far past year 9999
    assert fold.event_problem(event) == "time is out of range"


async def test_event_with_bad_subtask_id_is_terminated_and_others_fold(
    server: h.Running,
    worker: h.FakeWorker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An event whose subtask_id is not a UUID is terminated at once (logged as
    event_rejected, counted under reason `invalid`), never redelivered, and the events
    published with it still fold: the task succeeds and the consumer has nothing left."""
    alice = server.client("alice")
    before = _rejected("invalid")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
    [(message, job)] = await worker.fetch_exactly(1)
    poison = jobs_pb2.Job()
    poison.CopyFrom(job)
    poison.subtask_id = "not-a-uuid"
    await worker.event(poison, K.SUBTASK_EVENT_KIND_STARTED)
    await worker.succeed(message, job)
    await h.wait_for(lambda: _succeeded(alice, task.id), what="task succeeded")
    await h.wait_for(lambda: _consumer_settled(worker), what="every event acked or terminated")
    info = await worker.js.consumer_info(bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER)
    assert info.num_redelivered == 0
    assert _rejected("invalid") == before + 1
    logs = caplog.text + capsys.readouterr().out
    assert "event_rejected" in logs and "subtask_id is not a UUID" in logs


async def test_event_the_database_refuses_is_terminated_alone(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """An event that passes the checks but that the database refuses (a render time too
    large for its column) fails its batch; the batch is folded again one event at a time,
    so only that event is terminated (reason `unfoldable`), without redelivery, while the
    other task's events, published in the same moment, fold."""
    alice = server.client("alice")
    before = _rejected("unfoldable")
    bad_task = (await alice.tasks.CreateTask(h.create_request(values=("bad",)))).task
    good_task = (await alice.tasks.CreateTask(h.create_request(values=("good",)))).task
    jobs = {job.task_id: (message, job) for message, job in await worker.fetch_exactly(2)}
    bad_message, bad_job = jobs[bad_task.id]
    result = jobs_pb2.JobResult(object_name="x.png", content_type="image/png", model="fake")
    result.render_duration.seconds = 10**10  # 10^13 ms: more than an SQL integer holds
    await worker.event(bad_job, K.SUBTASK_EVENT_KIND_SUCCEEDED, result=result)
    await bad_message.ack()
    await worker.succeed(*jobs[good_task.id])
    await h.wait_for(lambda: _succeeded(alice, good_task.id), what="good task succeeded")
    await h.wait_for(lambda: _consumer_settled(worker), what="every event acked or terminated")
    info = await worker.js.consumer_info(bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER)
    assert info.num_redelivered == 0
    assert _rejected("unfoldable") == before + 1
    bad = await h.get_task(alice, bad_task.id)
    assert bad.succeeded_count == 0


async def test_advisory_for_a_job_naming_no_subtask_is_dropped_alone(
    server: h.Running, private_nats: NatsServer
) -> None:
    """A job that names no real subtask (subtask_id not a UUID) and exhausts its deliveries
    makes an advisory that can never fail a subtask: it is counted (reason `advisory`),
    the job is removed from the stream and the advisory is not redelivered, while another
    task's exhausted job still fails its subtask with MAX_DELIVERIES."""
    settings = bus.BusSettings(job_ack_wait=1.0, job_max_deliver=2)
    worker = await h.FakeWorker.connect(private_nats.url, settings=settings)
    before = _rejected("advisory")
    try:
        bogus = jobs_pb2.Job(subtask_id="not-a-uuid", task_id=str(uuid.uuid4()), attempt=1)
        await worker.js.publish(bus.jobs_subject("standard"), bogus.SerializeToString())
        alice = server.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("only",)))).task
        for _ in range(2):
            await worker.fetch_exactly(2, wait=5)  # never acknowledged
        # A worker keeps pulling; the server notices the exhausted jobs on a later pull.
        assert await worker.fetch(1, wait=2.5) == []

        async def failed() -> bool:
            got = await h.get_task(alice, task.id)
            return got.state == tasks_pb2.TASK_STATE_FAILED

        await h.wait_for(failed, within=15, what="task failed")

        async def drained() -> bool:
            jobs = await worker.js.stream_info(bus.JOBS_STREAM)
            info = await worker.js.consumer_info(bus.ADVISORIES_STREAM, bus.ADVISORIES_CONSUMER)
            return bool(jobs.state.messages == 0 and info.num_ack_pending == 0)

        await h.wait_for(drained, within=15, what="both jobs removed, advisories done")
        info = await worker.js.consumer_info(bus.ADVISORIES_STREAM, bus.ADVISORIES_CONSUMER)
        assert info.num_redelivered == 0
        assert _rejected("advisory") == before + 1
    finally:
        await worker.close()


def _worker_event(
    job: jobs_pb2.Job, kind: int, sequence: int, **fields: object
) -> jobs_pb2.SubtaskEvent:
    """An event as a worker makes it (first delivery)."""
    event = jobs_pb2.SubtaskEvent(
        event_id=uuid.uuid4().hex,
        subtask_id=job.subtask_id,
        task_id=job.task_id,
        attempt=job.attempt,
        sequence=sequence,
        kind=kind,  # type: ignore[arg-type]
        worker_id="batching-worker",
        delivery=1,
        **fields,  # type: ignore[arg-type]
    )
    event.time.GetCurrentTime()
    return event


def _result(job: jobs_pb2.Job) -> jobs_pb2.JobResult:
    result = jobs_pb2.JobResult(
        object_name=f"tasks/{job.task_id}/{job.subtask_id}.png",
        content_type="image/png",
        size_bytes=3,
        sha256="00" * 32,
        model="fake",
    )
    result.render_duration.FromMilliseconds(5)
    return result


async def _publish_batch(worker: h.FakeWorker, events: list[jobs_pb2.SubtaskEvent]) -> None:
    data, headers = subtask_events.encode(events)
    assert headers[bus.EVENT_BATCH_HEADER] == str(len(events))
    headers[bus.MSG_ID_HEADER] = uuid.uuid4().hex
    await worker.js.publish(bus.events_subject(events[0].task_id), data, headers=headers)


async def test_batch_message_folds_its_events_and_sets_a_bad_one_aside(
    server: h.Running,
    worker: h.FakeWorker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One message carrying the STARTED and SUCCEEDED events of two subtasks and an event
    that can never fold (subtask_id not a UUID): the bad event is set aside (logged as
    event_rejected, counted under `invalid`), the others fold -- the task succeeds with both
    subtasks counted once -- and the message is acknowledged, never redelivered."""
    alice = server.client("alice")
    before = _rejected("invalid")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    fetched = await worker.fetch_exactly(2)
    events = []
    for message, job in fetched:
        events.append(_worker_event(job, K.SUBTASK_EVENT_KIND_STARTED, 1))
        events.append(_worker_event(job, K.SUBTASK_EVENT_KIND_SUCCEEDED, 2, result=_result(job)))
        await message.ack()
    poison = _worker_event(fetched[0][1], K.SUBTASK_EVENT_KIND_STARTED, 3)
    poison.subtask_id = "not-a-uuid"
    events.insert(1, poison)
    await _publish_batch(worker, events)
    await h.wait_for(lambda: _succeeded(alice, task.id), what="task succeeded")
    await h.wait_for(lambda: _consumer_settled(worker), what="the message acknowledged")
    info = await worker.js.consumer_info(bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER)
    assert info.num_redelivered == 0
    assert _rejected("invalid") == before + 1
    done = await h.get_task(alice, task.id)
    assert (done.succeeded_count, done.total_images) == (2, 2)
    logs = caplog.text + capsys.readouterr().out
    assert "event_rejected" in logs and "subtask_id is not a UUID" in logs


async def test_batch_event_the_database_refuses_is_set_aside_alone(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """A batch message whose SUCCEEDED event of one task the database refuses (a render
    time too large for its column), beside another task's events: the fold of the batch
    fails, its events are folded one by one, the refused one is set aside (`unfoldable`),
    the other task succeeds, and the message is acknowledged without redelivery."""
    alice = server.client("alice")
    before = _rejected("unfoldable")
    bad_task = (await alice.tasks.CreateTask(h.create_request(values=("bad",)))).task
    good_task = (await alice.tasks.CreateTask(h.create_request(values=("good",)))).task
    jobs = {job.task_id: (message, job) for message, job in await worker.fetch_exactly(2)}
    events = []
    for task_id, (message, job) in jobs.items():
        result = _result(job)
        if task_id == bad_task.id:
            result.render_duration.seconds = 10**10  # 10^13 ms: more than an SQL integer holds
        events.append(_worker_event(job, K.SUBTASK_EVENT_KIND_SUCCEEDED, 1, result=result))
        await message.ack()
    # Workers send one message per task; a batch naming two tasks must fold just as well.
    await _publish_batch(worker, events)
    await h.wait_for(lambda: _succeeded(alice, good_task.id), what="good task succeeded")
    await h.wait_for(lambda: _consumer_settled(worker), what="the message acknowledged")
    info = await worker.js.consumer_info(bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER)
    assert info.num_redelivered == 0
    assert _rejected("unfoldable") == before + 1
    assert (await h.get_task(alice, bad_task.id)).succeeded_count == 0


async def test_batch_message_of_only_bad_events_is_terminated(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """A batch message none of whose events can fold is terminated (each event counted),
    not redelivered; an undecodable batch (the header on bytes of something else) is
    terminated as `undecodable`."""
    before_invalid, before_undecodable = _rejected("invalid"), _rejected("undecodable")
    job = jobs_pb2.Job(subtask_id="not-a-uuid", task_id=str(uuid.uuid4()), attempt=1)
    await _publish_batch(
        worker,
        [_worker_event(job, K.SUBTASK_EVENT_KIND_STARTED, n) for n in (1, 2)],
    )
    await worker.js.publish(
        bus.events_subject(job.task_id),
        b"\xff\xff not protobuf",
        headers={bus.EVENT_BATCH_HEADER: "2", bus.MSG_ID_HEADER: uuid.uuid4().hex},
    )
    await h.wait_for(lambda: _consumer_settled(worker), what="both messages terminated")
    info = await worker.js.consumer_info(bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER)
    assert info.num_redelivered == 0
    assert _rejected("invalid") == before_invalid + 2
    assert _rejected("undecodable") == before_undecodable + 1
