"""T18 (webhooks): unsendable and private webhook targets against a real tasks process and a
real local receiver."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from faults import checks
from faults.harness import Client, Fault

from tasks import testing as h
from tasks.webhook_receiver import Receiver

SECRET = "s3cret-s3cret-s3cret"
BAD_URLS = [
    "http://\u2460.example/hook",
    "http://xn--.example/hook",
    f"http://{'a' * 64}.example/hook",
]
FAST_WEBHOOKS = {"TASKS_WEBHOOK_POLL_SECONDS": "0.2", "TASKS_WEBHOOK_BACKOFF_SECONDS": "0.2"}


@pytest.fixture
def receiver(fault: Fault) -> Iterator[Receiver]:
    """A loopback HTTP receiver noting the attempts recorded when each POST arrives."""
    running = Receiver(database_url=fault.database_url)
    yield running
    running.close()


def _create(client: Client, url: str) -> Any:
    request = client.request(1)
    request.settings.webhook.url = url
    request.settings.webhook.secret = SECRET
    return client.stub.CreateTask(request, metadata=client.metadata, timeout=30).task


def _deliveries(database_url: str) -> dict[str, dict[str, Any]]:
    rows = checks.rows(
        database_url,
        "SELECT task_id::text AS task_id, state, attempts, last_error "
        "FROM tasks.webhook_deliveries",
    )
    return {row["task_id"]: row for row in rows}


def _refused_at_create(client: Client, url: str) -> dict[str, Any]:
    with pytest.raises(grpc.RpcError) as caught:
        _create(client, url)
    return dict(h.status_details(caught.value))


@pytest.mark.long
@pytest.mark.timeout(120)
def test_unsendable_webhook_urls_refused_and_others_delivered(
    fault: Fault, receiver: Receiver
) -> None:
    """CreateTask refuses URLs no client can send to (no IDNA form, a bad A-label, a
    64-character label) with INVALID_ARGUMENT on settings.webhook.url. Tasks whose rows
    hold such URLs anyway (stored before the check) get a failed delivery each, while
    another user's webhook is POSTed once, recorded before it was sent, and delivered; the
    sender never fails a whole round."""
    fault.start(workers=0, extra_env={"TASKS_WEBHOOK_ALLOW_PRIVATE": "true", **FAST_WEBHOOKS})
    alice, bob = fault.client(), fault.client()
    for url in BAD_URLS:
        details = _refused_at_create(alice, url)
        assert details["code"] == grpc.StatusCode.INVALID_ARGUMENT
        assert details["fields"] == ["settings.webhook.url"]
    legacy = [_create(alice, receiver.url()).id for _ in BAD_URLS]
    with psycopg.connect(fault.database_url, autocommit=True) as conn:
        for task_id, url in zip(legacy, BAD_URLS, strict=True):
            conn.execute("UPDATE tasks.tasks SET webhook_url = %s WHERE id = %s", (url, task_id))
    other = _create(bob, receiver.url()).id
    fault.add_worker()
    fault.wait_finished(within=60)

    def settled() -> bool:
        rows = _deliveries(fault.database_url)
        return len(rows) == len(legacy) + 1 and all(r["state"] != "pending" for r in rows.values())

    checks.wait_until(settled, within=30, what="every delivery delivered or failed")
    rows = _deliveries(fault.database_url)
    assert rows[other]["state"] == "delivered" and rows[other]["attempts"] == 1
    for task_id in legacy:
        assert rows[task_id]["state"] == "failed" and rows[task_id]["attempts"] == 1
        assert rows[task_id]["last_error"].startswith("invalid URL: ")
    [received] = receiver.received
    assert received.recorded_attempts == 1
    log = fault.kiln.tasks.log_path.read_text(errors="replace")
    assert "webhook_round_failed" not in log and SECRET not in log


def _loopback_name() -> str:
    """This machine's own host name when it resolves to loopback addresses only."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"{name} does not resolve here")
    if not infos or any(not str(i[4][0]).startswith(("127.", "::1")) for i in infos):
        pytest.skip(f"{name} does not resolve to loopback only")
    return name


@pytest.mark.long
@pytest.mark.timeout(120)
def test_private_targets_refused_without_allow_private(fault: Fault, receiver: Receiver) -> None:
    """With TASKS_WEBHOOK_ALLOW_PRIVATE off, CreateTask refuses an IPv6 literal that embeds
    127.0.0.1 (NAT64 form), and a name that passes CreateTask but resolves to loopback is
    refused at delivery time by the real resolver: the delivery fails ("refused: ...") and
    nothing reaches the receiver."""
    name = _loopback_name()
    fault.start(workers=1, extra_env={"TASKS_WEBHOOK_ALLOW_PRIVATE": "false", **FAST_WEBHOOKS})
    client = fault.client()
    details = _refused_at_create(client, receiver.url("[64:ff9b::7f00:1]"))
    assert details["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert details["fields"] == ["settings.webhook.url"]
    task = _create(client, receiver.url(name))
    fault.wait_finished(within=60)

    def failed() -> bool:
        row = _deliveries(fault.database_url).get(task.id)
        return row is not None and row["state"] == "failed"

    checks.wait_until(failed, within=30, what="the delivery refused")
    row = _deliveries(fault.database_url)[task.id]
    assert row["last_error"] == "refused: must not point at a loopback address"
    assert receiver.received == []
