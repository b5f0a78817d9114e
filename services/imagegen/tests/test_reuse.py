"""Reused results in the worker: what the render key depends on, and which stored images a
job may be served with (against real NATS JetStream, an in-process worker)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from worker_harness import Kind, bus_with_worker, make_job

from imagegen import reuse
from kiln.common import bus
from kiln.common.testing.nats_server import NatsServer
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2

pytestmark = pytest.mark.timeout(60)

BASE = reuse.RenderInputs(
    prompt="a fox",
    negative_prompt="blur",
    seed=7,
    width=96,
    height=64,
    ratio="3:2",
    image_format=imagegen_pb2.IMAGE_FORMAT_PNG,
    provider=reuse.provider_identity("procedural", {"step_delay": 0}, "procedural-v1"),
)


def test_render_key_changes_with_every_render_input() -> None:
    """Equal inputs give equal keys; changing any one input (prompt, negative prompt, seed,
    width, height, ratio, format, provider) gives another key; secret provider options do
    not take part."""
    changed: dict[str, Any] = {
        "prompt": "a fox, polished",
        "negative_prompt": "",
        "seed": 8,
        "width": 97,
        "height": 65,
        "ratio": "1:1",
        "image_format": imagegen_pb2.IMAGE_FORMAT_WEBP,
        "provider": reuse.provider_identity("procedural", {"step_delay": 0}, "other-model"),
    }
    assert {f.name for f in dataclasses.fields(reuse.RenderInputs)} == set(changed)
    keys = {dataclasses.replace(BASE, **{name: value}).key() for name, value in changed.items()}
    assert BASE.key() == dataclasses.replace(BASE).key()
    assert len(keys | {BASE.key()}) == len(changed) + 1
    with_key = reuse.provider_identity("http", {"base_url": "u", "api_key": "one"}, "m")
    other_key = reuse.provider_identity("http", {"base_url": "u", "api_key": "two"}, "m")
    assert with_key == other_key


def _job(owner: str, *, reuse_results: bool = False, share_results: bool = False) -> jobs_pb2.Job:
    job = make_job("a lighthouse reused", use_polish=True)
    job.owner_id = owner
    job.reuse_results = reuse_results
    job.share_results = share_results
    return job


async def test_a_job_is_served_a_copy_only_of_images_it_may_reuse(
    private_nats: NatsServer,
) -> None:
    """Owner 1's shared-only job renders and records; a second one renders too (it did not
    ask for reuse); owner 2's reusing job gets a byte-equal copy of the latest shared image
    under its own names; a reusing redelivery of that image's own subtask renders instead
    of copying itself."""
    async with bus_with_worker(private_nats.url) as (tasks, _runtime):
        results: list[jobs_pb2.JobResult] = []
        first, second = _job("owner-1", share_results=True), _job("owner-1", share_results=True)
        reuser = _job("owner-2", reuse_results=True)
        for job in (first, second, reuser):
            await tasks.publish(job)
            done = await tasks.wait_terminal(job.subtask_id)
            assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED
            results.append(done.result)

        assert [r.reused_from_subtask_id for r in results] == ["", "", second.subtask_id]
        copy = results[2]
        assert copy.object_name == f"tasks/{reuser.task_id}/{reuser.subtask_id}.png"
        data = await tasks.read_object(copy.object_name)
        assert data == await tasks.read_object(results[1].object_name)
        assert hashlib.sha256(data).hexdigest() == copy.sha256 == results[1].sha256
        assert await tasks.read_object(copy.thumbnail_object_name)
        assert copy.polished_prompt == results[1].polished_prompt != ""
        assert not copy.HasField("render_duration")

        # Both of owner 1's entries name the second job's image: its own redelivery, now
        # reusing, must not be served its own image.
        again = jobs_pb2.Job()
        again.CopyFrom(second)
        again.attempt = 2
        again.reuse_results = True
        await tasks.publish(again)
        events = await tasks.wait_for(again.subtask_id, Kind.SUBTASK_EVENT_KIND_SUCCEEDED, 2)
        assert events[-1].result.reused_from_subtask_id == ""


async def test_a_damaged_or_unreadable_entry_means_rendering(private_nats: NatsServer) -> None:
    """An index entry that is not an entry, or names an image that is not stored, does not
    fail the job: it renders."""
    async with bus_with_worker(private_nats.url) as (tasks, runtime):
        job = _job("owner-3", reuse_results=True)
        index = await tasks.js.key_value(bus.RENDER_INDEX_BUCKET)
        assert runtime.runner._index is not None
        key = runtime.runner._index.render_key(
            job, "standard", await runtime.pipeline.polish.polish(job.prompt)
        )
        scope = reuse.owner_scope("owner-3")
        await index.put(f"{scope}.{key}", b"not json")
        missing = reuse.StoredImage("other", "tasks/x/gone.png", "tasks/x/gone.thumb.webp", 1, 1)
        await index.put(f"{reuse.SHARED_SCOPE}.{key}", missing.encode())

        await tasks.publish(job)
        done = await tasks.wait_terminal(job.subtask_id)
        assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED
        assert done.result.reused_from_subtask_id == ""
        recorded = reuse.StoredImage.decode((await index.get(f"{scope}.{key}")).value or b"")
        assert recorded is not None and recorded.subtask_id == job.subtask_id
