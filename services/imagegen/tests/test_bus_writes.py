"""What a worker writes to the bus, against real JetStream: images in the object store's own
format with fewer requests, and job events batched per task."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from imagegen import events, imaging
from imagegen.store import CHUNK_SIZE, ImageStore
from kiln.common import bus, jetstream, subtask_events
from kiln.common.testing.nats_server import NatsServer
from kiln.imagegen.v1 import jobs_pb2

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def _bus(nats_url: str, provision: bool = True) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_url)
    if provision:
        settings = bus.BusSettings()
        await jetstream.provision(nc.jetstream(), bus.worker_topology(bus.QUEUES, settings))
    try:
        yield nc
    finally:
        await nc.close()


def _image(data: bytes) -> imaging.EncodedImage:
    return imaging.EncodedImage(
        data=data,
        format=imaging.ImageFormat.PNG,
        width=1,
        height=1,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


async def _store_messages(nc: Client) -> int:
    info = await nc.jetstream().stream_info(f"OBJ_{bus.IMAGES_STORE}")
    return int(info.state.messages)


async def test_stored_objects_read_back_with_the_object_store_client(
    private_nats: NatsServer,
) -> None:
    """Objects of one and of several chunks, written together, read back byte for byte
    with nats-py's ObjectStore (digest checked by it), with their content type."""
    small, large = b"small png bytes", os.urandom(CHUNK_SIZE * 2 + 17)
    async with _bus(private_nats.url) as nc:
        store = await ImageStore.open(nc.jetstream())
        await store.put_all([("t/a.png", _image(small)), ("t/b.png", _image(large))])
        reader = await nc.jetstream().object_store(bus.IMAGES_STORE)
        for name, data in (("t/a.png", small), ("t/b.png", large)):
            found = await reader.get(name)
            assert found.data == data
            assert found.info.description == "image/png"
            assert found.info.size == len(data)
        assert (await reader.get_info("t/b.png")).chunks == 3


async def test_storing_the_same_bytes_again_replaces_them_in_place(
    private_nats: NatsServer,
) -> None:
    """A repeat of a first write (the same bytes, e.g. a job re-published after the dedupe
    window) leaves one chunk and one metadata message, not two of each."""
    async with _bus(private_nats.url) as nc:
        store = await ImageStore.open(nc.jetstream())
        await store.put("t/a.png", _image(b"bytes"), first_write=True)
        assert await _store_messages(nc) == 2
        await store.put("t/a.png", _image(b"bytes"), first_write=True)
        assert await _store_messages(nc) == 2


@pytest.mark.parametrize("size", [10, CHUNK_SIZE + 1])
async def test_a_rewrite_with_other_bytes_purges_the_older_chunks(
    private_nats: NatsServer, size: int
) -> None:
    """A later delivery that stores other bytes under the same name replaces the object
    and removes the chunks of the older version, for small and multi-chunk objects."""
    first, second = os.urandom(size), os.urandom(size)
    chunks = -(-size // CHUNK_SIZE)
    async with _bus(private_nats.url) as nc:
        store = await ImageStore.open(nc.jetstream())
        await store.put("t/a.png", _image(first), first_write=True)
        await store.put("t/a.png", _image(second), first_write=False)
        reader = await nc.jetstream().object_store(bus.IMAGES_STORE)
        assert (await reader.get("t/a.png")).data == second
        assert await _store_messages(nc) == chunks + 1


class _Listener:
    """Every message on the events subjects, as it arrives."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []

    async def on_message(self, msg: Msg) -> None:
        self.messages.append(msg)

    def events(self) -> list[jobs_pb2.SubtaskEvent]:
        return [e for m in self.messages for e in subtask_events.decode(m.data, m.headers)]


def _event(task_id: str, n: int) -> jobs_pb2.SubtaskEvent:
    return jobs_pb2.SubtaskEvent(
        event_id=f"{task_id}.{n}",
        subtask_id=str(uuid.uuid4()),
        task_id=task_id,
        attempt=1,
        sequence=n,
        kind=jobs_pb2.SUBTASK_EVENT_KIND_STARTED,
    )


async def test_events_of_many_jobs_share_one_message_per_task(private_nats: NatsServer) -> None:
    """Events submitted together travel as one SubtaskEventBatch per task (header with the
    count, a message id of the worker), in order; each submitter learns its event was
    stored."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    sent = [_event(first, n) for n in range(30)] + [_event(second, n) for n in range(5)]
    async with _bus(private_nats.url) as nc:
        listener = _Listener()
        await nc.subscribe(bus.EVENTS_WILDCARD, cb=listener.on_message)
        publisher = events.EventPublisher(nc.jetstream(), "w1", linger=0.01)
        publisher.start()
        await asyncio.gather(*(publisher.submit(event) for event in sent))
        await nc.flush()
        await publisher.stop()
        headers = [m.headers or {} for m in listener.messages]
        assert sorted(h[bus.EVENT_BATCH_HEADER] for h in headers) == ["30", "5"]
        assert all(h[bus.MSG_ID_HEADER].startswith("w1.b") for h in headers)
        assert sorted(e.event_id for e in listener.events()) == sorted(e.event_id for e in sent)
        assert [e.sequence for e in listener.events() if e.task_id == first] == list(range(30))


async def test_a_lone_event_and_batch_size_one_send_plain_events(
    private_nats: NatsServer,
) -> None:
    """A lone event, and every event when batches hold one, go as a plain SubtaskEvent with
    the event's own id as message id: the form tasks services before batching read."""
    task_id = str(uuid.uuid4())
    async with _bus(private_nats.url) as nc:
        listener = _Listener()
        await nc.subscribe(bus.EVENTS_WILDCARD, cb=listener.on_message)
        publisher = events.EventPublisher(nc.jetstream(), "w1", max_events=1)
        publisher.start()
        await publisher.submit(_event(task_id, 0))
        await asyncio.gather(*(publisher.submit(_event(task_id, n)) for n in (1, 2, 3)))
        await nc.flush()
        await publisher.stop()
        assert len(listener.messages) == 4
        for n, message in enumerate(listener.messages):
            headers = message.headers or {}
            assert bus.EVENT_BATCH_HEADER not in headers
            assert headers[bus.MSG_ID_HEADER] == f"{task_id}.{n}"
            assert jobs_pb2.SubtaskEvent.FromString(message.data).sequence == n


async def test_events_nobody_stores_fail_after_their_tries(private_nats: NatsServer) -> None:
    """With no stream to take them (a bus not provisioned), an event allowed one try fails
    after one publish and the others after all of theirs, each with PublishFailed."""
    async with _bus(private_nats.url, provision=False) as nc:
        publisher = events.EventPublisher(nc.jetstream(), "w1")
        publisher.start()
        progress = publisher.submit(_event("t", 1), tries=1)
        result = publisher.submit(_event("t", 2), tries=2)
        with pytest.raises(events.PublishFailed):
            await progress
        assert not result.done()
        with pytest.raises(events.PublishFailed):
            await result
        await publisher.stop()
