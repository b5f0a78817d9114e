"""Webhooks: signed POSTs to a real local HTTP server, retried with a stable id."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h

SECRET = "s3cret-s3cret-s3cret"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    fail_first: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.received.append({"headers": dict(self.headers), "body": body})
        status = 500 if len(self.received) <= self.fail_first else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server that fails the first two POSTs, then accepts."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Receiver,), {"received": received, "fail_first": 2})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    httpd.shutdown()
    httpd.server_close()


async def test_task_finished_webhook_signed_and_retried(
    server: h.Running,
    worker: h.FakeWorker,
    receiver: tuple[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When the task finishes, its webhook gets a POST signed with HMAC-SHA256 over
    "<timestamp>.<body>"; failed attempts are retried with the same delivery id; attempts
    are recorded; the secret never appears in the logs."""
    caplog.set_level(logging.DEBUG)
    url, received = receiver
    alice = server.client("alice")
    request = h.create_request(values=("a",))
    request.settings.webhook.url = url
    request.settings.webhook.secret = SECRET
    task = (await alice.tasks.CreateTask(request)).task
    assert task.settings.webhook.url == url and not task.settings.webhook.secret
    [(message, job)] = await worker.fetch_exactly(1)
    await worker.succeed(message, job)

    async def delivered() -> bool:
        async with server.app.engine.connect() as conn:
            from sqlalchemy import text  # noqa: PLC0415

            state = await conn.scalar(text("SELECT state FROM tasks.webhook_deliveries"))
        return bool(state == "delivered")

    await h.wait_for(delivered, within=30, what="delivered after two failures")
    ids = {r["headers"]["Kiln-Webhook-Id"] for r in received}
    assert len(ids) == 1
    for attempt in received:
        headers, body = attempt["headers"], attempt["body"]
        stamp = headers["Kiln-Webhook-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
        assert headers["Kiln-Webhook-Signature"] == expected
        payload = json.loads(body)
        assert payload["event"] == "task_finished" and payload["task"]["id"] == task.id
        assert payload["task"]["state"] == "succeeded" and payload["id"] in ids
    async with server.app.engine.connect() as conn:
        from sqlalchemy import text  # noqa: PLC0415

        rows = (
            await conn.execute(text("SELECT status_code FROM tasks.webhook_attempts ORDER BY id"))
        ).all()
        state = await conn.scalar(text("SELECT state FROM tasks.webhook_deliveries"))
    assert [r[0] for r in rows] == [500, 500, 204] and state == "delivered"
    logs = caplog.text + capsys.readouterr().out
    assert SECRET not in logs


async def test_private_targets_refused_unless_allowed(
    tasks_config: h.TasksConfig, signer: h.TestSigner
) -> None:
    """Without TASKS_WEBHOOK_ALLOW_PRIVATE, a loopback or private webhook URL is refused at
    CreateTask with INVALID_ARGUMENT on settings.webhook.url."""
    import grpc  # noqa: PLC0415

    cfg = h.make_config(
        tasks_config.database_url, tasks_config.nats_url, TASKS_WEBHOOK_ALLOW_PRIVATE="false"
    )
    running = await h.start(cfg, signer)
    try:
        alice = running.client("alice")
        for target in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://localhost/x"):
            request = h.create_request()
            request.settings.webhook.url = target
            request.settings.webhook.secret = SECRET
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await alice.tasks.CreateTask(request)
            assert h.status_details(caught.value)["fields"] == ["settings.webhook.url"]
        request = h.create_request()
        request.settings.webhook.url = "https://example.com/hook"
        request.settings.webhook.secret = SECRET
        request.settings.webhook.events.append(tasks_pb2.WEBHOOK_EVENT_SUBTASK_FINISHED)
        task = (await alice.tasks.CreateTask(request)).task
        assert list(task.settings.webhook.events) == [tasks_pb2.WEBHOOK_EVENT_SUBTASK_FINISHED]
    finally:
        await h.stop(running)


async def test_subtask_finished_events_when_asked(
    server: h.Running, worker: h.FakeWorker, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    """A webhook that asks for subtask_finished (and not task_finished) gets one delivery per
    finished subtask and none for the task."""
    url, received = receiver
    alice = server.client("alice")
    request = h.create_request(values=("a", "b"))
    request.settings.webhook.url = url
    request.settings.webhook.secret = SECRET
    request.settings.webhook.events.append(tasks_pb2.WEBHOOK_EVENT_SUBTASK_FINISHED)
    await alice.tasks.CreateTask(request)
    for message, job in await worker.fetch_exactly(2):
        await worker.succeed(message, job)

    async def delivered() -> bool:
        async with server.app.engine.connect() as conn:
            from sqlalchemy import text  # noqa: PLC0415

            rows = (
                await conn.execute(text("SELECT event, state FROM tasks.webhook_deliveries"))
            ).all()
        return len(rows) == 2 and all(r[1] == "delivered" for r in rows)

    await h.wait_for(delivered, within=15, what="two deliveries")
    events = {json.loads(r["body"])["event"] for r in received}
    assert events == {"subtask_finished"}
    ids = {json.loads(r["body"])["subtask"]["id"] for r in received}
    assert len(ids) == 2
