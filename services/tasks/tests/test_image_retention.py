"""Image retention: the image store forgets old images, and GetImage says so clearly."""

from __future__ import annotations

import grpc

from kiln.common import bus
from kiln.common.testing import NatsServer
from kiln.common.testing.status import error_reason
from kiln.common.testing.tokens import TestSigner
from kiln.tasks.v1 import tasks_pb2
from tasks import app
from tasks import testing as h


async def _get_image(client: h.Client_, subtask_id: str) -> grpc.aio.AioRpcError | None:
    try:
        async for _ in client.tasks.GetImage(tasks_pb2.GetImageRequest(subtask_id=subtask_id)):
            pass
    except grpc.aio.AioRpcError as error:
        return error
    return None


async def test_an_image_past_its_retention_is_failed_precondition_image_expired(
    database_url: str, private_nats: NatsServer, signer: TestSigner
) -> None:
    """With IMAGES_MAX_AGE_SECONDS=1 the image store drops an image a second after it was
    stored; the subtask stays SUCCEEDED, and GetImage then answers FAILED_PRECONDITION with
    reason IMAGE_EXPIRED and a message naming the retention settings."""
    config = h.make_config(database_url, private_nats.url, IMAGES_MAX_AGE_SECONDS="1")
    app.migrate(config)
    running = await h.start(config, signer)
    worker = await h.FakeWorker.connect(
        private_nats.url, settings=bus.BusSettings(job_ack_wait=2.0, images_max_age=1.0)
    )
    try:
        alice = running.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
        [(message, job)] = await worker.fetch_exactly(1)
        await worker.succeed(message, job)

        async def succeeded() -> bool:
            got = await h.get_task(alice, task.id)
            return got.state == tasks_pb2.TASK_STATE_SUCCEEDED

        await h.wait_for(succeeded, what="task succeeded")
        outcome: list[grpc.aio.AioRpcError | None] = []

        async def expired() -> bool:
            outcome.append(await _get_image(alice, job.subtask_id))
            return outcome[-1] is not None

        await h.wait_for(expired, within=15, interval=0.2, what="image expired")
        error = outcome[-1]
        assert error is not None
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(error) == "IMAGE_EXPIRED"
        assert "IMAGES_MAX_AGE_SECONDS" in (error.details() or "")
        assert (await h.get_task(alice, task.id)).state == tasks_pb2.TASK_STATE_SUCCEEDED
    finally:
        await worker.close()
        await h.stop(running)
