"""The webhook sender against real PostgreSQL and a real local receiver: each delivery fails
alone, every POST is recorded before it is sent, and the POST goes to the checked address.

Finished tasks and their deliveries are written straight into a migrated database, so the
sender under test is the only one working on them. Name lookups are answered by the
test (DNS is the third party here), which is how a rebinding name is played.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kiln.common import db
from tasks import app, store, webhook_target, webhooks
from tasks import testing as h
from tasks.webhook_receiver import Receiver, certificates

SECRET = "s3cret-s3cret-s3cret"


class Answers:
    """Name lookups answered by the test, counted; the last answer repeats."""

    def __init__(self, *answers: list[str] | OSError) -> None:
        self._answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[webhook_target.IPAddress]:
        answer = self._answers[min(self.calls, len(self._answers) - 1)]
        self.calls += 1
        if isinstance(answer, OSError):
            raise answer
        return [ipaddress.ip_address(a) for a in answer]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh migrated database (the sender needs no NATS)."""
    cfg = h.make_config(database_url, "nats://127.0.0.1:4222")
    app.migrate(cfg)
    made = db.create_engine(cfg, application_name="webhook-test")
    yield made
    await made.dispose()


@pytest.fixture
def receiver(database_url: str) -> Iterator[Receiver]:
    """A local HTTP receiver that notes the attempts recorded when each POST arrives."""
    running = Receiver(database_url=database_url)
    yield running
    running.close()


_TASK = """
INSERT INTO tasks.tasks (id, owner_id, task_name, prompt_template, variables, zip_groups,
    images_per_combination, ratio, use_polish, queue, negative_prompt, output_format,
    priority, webhook_url, webhook_secret, state, total_images, finish_time)
VALUES (CAST(:id AS uuid), :owner, 'hooked', 'a cat', '{}', '[]', 1, '1:1', false,
    'standard', '', 'png', 0, :url, :secret, 'succeeded', 1, now())
"""


async def _deliveries(engine: AsyncEngine, urls: list[str]) -> list[str]:
    """One finished task per URL (each of its own owner) with one due task_finished
    delivery; the URL is stored as it is, as a row stored before CreateTask checked it."""
    delivery_ids = []
    async with engine.begin() as conn:
        for i, url in enumerate(urls):
            task_id, delivery_id = str(uuid.uuid4()), str(uuid.uuid4())
            await conn.execute(
                text(_TASK), {"id": task_id, "owner": f"user{i}", "url": url, "secret": SECRET}
            )
            body = json.dumps({"id": delivery_id, "event": "task_finished"})
            await store.enqueue_webhook(conn, delivery_id, task_id, "task_finished", body)
            delivery_ids.append(delivery_id)
    return delivery_ids


def _sender(engine: AsyncEngine, **options: Any) -> webhooks.Sender:
    settings: dict[str, Any] = {
        "allow_private": True,
        "timeout": 5.0,
        "max_attempts": 3,
        "backoff": 0.01,
        "poll": 0.1,
    }
    return webhooks.Sender(engine, **{**settings, **options})


async def _state(engine: AsyncEngine, delivery_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        delivery = (
            (
                await conn.execute(
                    text(
                        "SELECT state, attempts, last_error FROM tasks.webhook_deliveries "
                        "WHERE id = CAST(:id AS uuid)"
                    ),
                    {"id": delivery_id},
                )
            )
            .mappings()
            .one()
        )
        attempts = (
            await conn.execute(
                text(
                    "SELECT status_code, error FROM tasks.webhook_attempts "
                    "WHERE delivery_id = CAST(:id AS uuid) ORDER BY attempt"
                ),
                {"id": delivery_id},
            )
        ).all()
    return {**delivery, "attempts_recorded": [tuple(a) for a in attempts]}


BAD_URLS = [
    "http://\u2460.example/hook",
    "http://xn--.example/hook",
    f"http://{'a' * 64}.example/hook",
]


async def test_unsendable_url_fails_alone_and_others_are_delivered(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """Deliveries to URLs no client can send to (stored before CreateTask checked them) end
    as failed attempts of their own ("invalid URL"), in the same round in which other
    users' deliveries are POSTed and recorded as delivered."""
    ids = await _deliveries(engine, [*BAD_URLS, receiver.url()])
    sender = _sender(engine)
    try:
        assert await sender.send_due() == len(ids)
    finally:
        await sender.close()
    for bad in ids[:-1]:
        state = await _state(engine, bad)
        assert state["state"] == "failed" and state["attempts"] == 1
        assert state["last_error"].startswith("invalid URL: ")
    good = await _state(engine, ids[-1])
    assert good["state"] == "delivered" and good["attempts_recorded"] == [(204, None)]
    assert len(receiver.received) == 1


async def test_every_post_is_recorded_before_it_is_sent(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """When a POST reaches the receiver, its attempt is already committed in
    webhook_attempts (so a crash after the POST never repeats it unrecorded); retries of a
    failing receiver are each recorded before they arrive, under one stable delivery id."""
    receiver.status = 500
    [delivery_id] = await _deliveries(engine, [receiver.url()])
    sender = _sender(engine, max_attempts=3)
    try:
        for _ in range(3):
            await h.wait_for(sender.send_due, within=5, what="a due delivery")
    finally:
        await sender.close()
    assert [r.recorded_attempts for r in receiver.received] == [1, 2, 3]
    assert {r.headers["Kiln-Webhook-Id"] for r in receiver.received} == {delivery_id}
    state = await _state(engine, delivery_id)
    assert state["state"] == "failed" and state["attempts_recorded"] == [(500, None)] * 3


async def test_attempt_cut_short_stays_recorded_and_is_retried(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """A sender that stops after claiming (as a crashed process would) leaves an attempt row
    that says it has no outcome; once its lease ends the delivery is tried again as
    attempt 2 and delivered, and both attempts stay on record."""
    [delivery_id] = await _deliveries(engine, [receiver.url()])
    crashed = _sender(engine, timeout=0.01)  # its lease is 3 x timeout + 10 s
    try:
        assert len(await crashed._claim(20)) == 1  # claimed, never sent
    finally:
        await crashed.close()
    async with engine.begin() as conn:  # the lease runs out
        await conn.execute(text("UPDATE tasks.webhook_deliveries SET next_attempt_time = now()"))
    sender = _sender(engine)
    try:
        assert await sender.send_due() == 1
    finally:
        await sender.close()
    state = await _state(engine, delivery_id)
    assert state["state"] == "delivered"
    assert state["attempts_recorded"] == [(None, webhooks.UNFINISHED), (204, None)]
    assert [r.recorded_attempts for r in receiver.received] == [2]


async def test_post_goes_to_the_checked_address_with_the_original_host(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """The name is looked up once per attempt and the POST connects only to addresses that
    lookup gave and the check passed, in order (127.0.0.2 refuses the connection, so
    127.0.0.1 is next), sending the URL's own Host header: `hook.test` (which no real DNS
    resolves) reaches the loopback receiver although a second lookup would now answer a
    different address (DNS rebinding)."""
    [delivery_id] = await _deliveries(engine, [receiver.url("hook.test")])
    answers = Answers(["127.0.0.2", "127.0.0.1"], ["192.0.2.1"])
    sender = _sender(engine, resolver=answers)
    try:
        assert await sender.send_due() == 1
    finally:
        await sender.close()
    assert answers.calls == 1
    assert (await _state(engine, delivery_id))["state"] == "delivered"
    [received] = receiver.received
    assert received.headers["Host"] == f"hook.test:{receiver.port}"


async def test_https_post_to_checked_address_verifies_the_original_name(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Over https the connection goes to the checked address while TLS sends the URL's
    name as SNI and verifies the certificate against it: a certificate for `hook.test`
    is accepted, one for another name is a failed attempt and nothing is received."""
    tls = certificates(tmp_path, "hook.test", "other.test")
    good, wrong = Receiver(tls=tls.servers[0]), Receiver(tls=tls.servers[1])
    try:
        urls = [good.url("hook.test", "https"), wrong.url("hook.test", "https")]
        ids = await _deliveries(engine, urls)
        for delivery_id in ids:
            async with engine.begin() as conn:  # one delivery due at a time
                await conn.execute(
                    text(
                        "UPDATE tasks.webhook_deliveries SET next_attempt_time = CASE "
                        "WHEN id = CAST(:id AS uuid) THEN now() ELSE now() + interval '1 hour' END"
                    ),
                    {"id": delivery_id},
                )
            sender = _sender(engine, resolver=Answers(["127.0.0.1"]), verify=tls.client)
            try:
                assert await sender.send_due() == 1
            finally:
                await sender.close()
        delivered = await _state(engine, ids[0])
        assert delivered["state"] == "delivered"
        [received] = good.received
        assert received.server_name == "hook.test"
        mismatched = await _state(engine, ids[1])
        assert mismatched["state"] == "pending" and mismatched["last_error"] == "ConnectError"
        assert wrong.received == []
    finally:
        good.close()
        wrong.close()


async def test_failed_lookup_is_a_failed_attempt(engine: AsyncEngine, receiver: Receiver) -> None:
    """When the lookup fails the attempt is recorded as failed ("lookup failed") and
    retried later; nothing is POSTed."""
    [delivery_id] = await _deliveries(engine, [receiver.url("hook.test")])
    sender = _sender(engine, resolver=Answers(socket.gaierror(socket.EAI_NONAME, "no name")))
    try:
        assert await sender.send_due() == 1
    finally:
        await sender.close()
    state = await _state(engine, delivery_id)
    assert state["state"] == "pending"
    assert state["attempts_recorded"] == [(None, "lookup failed: gaierror")]
    assert receiver.received == []


async def test_private_targets_refused_at_delivery(engine: AsyncEngine, receiver: Receiver) -> None:
    """Without allow_private, a delivery whose name resolves to any loopback address (even
    after a public one), or whose host is an IPv6 form embedding 127.0.0.1, ends failed
    ("refused: ...") without a POST."""
    hosts = [
        "hook.test",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[::7f00:1]",
        "[::ffff:127.0.0.1]",
    ]
    ids = await _deliveries(engine, [receiver.url(host) for host in hosts])
    sender = _sender(engine, allow_private=False, resolver=Answers(["93.184.216.34", "127.0.0.1"]))
    try:
        assert await sender.send_due() == len(hosts)
    finally:
        await sender.close()
    for delivery_id in ids:
        state = await _state(engine, delivery_id)
        assert state["state"] == "failed"
        assert state["last_error"] == "refused: must not point at a loopback address"
    assert receiver.received == []


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers a request one header byte every 0.1 s, for ever (each read is quick, the
    answer never ends)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(b"z")
            await writer.drain()
            await asyncio.sleep(0.1)


async def test_a_trickling_target_cannot_hold_the_round(
    engine: AsyncEngine, receiver: Receiver
) -> None:
    """A target that answers a byte at a time (every read within the timeout, the answer
    never done) gets a failed attempt ("timeout: ...") when the attempt's one deadline
    passes, and the other delivery of the same round is delivered."""
    slow = await asyncio.start_server(_trickle, "127.0.0.1", 0)
    try:
        port = slow.sockets[0].getsockname()[1]
        slow_id, other_id = await _deliveries(
            engine, [f"http://127.0.0.1:{port}/hook", receiver.url()]
        )
        sender = _sender(engine, timeout=1.0)
        try:
            assert await asyncio.wait_for(sender.send_due(), timeout=10) == 2
        finally:
            await sender.close()
    finally:
        slow.close()
    state = await _state(engine, slow_id)
    assert state["state"] == "pending"
    assert state["attempts_recorded"] == [(None, "timeout: no answer within 1 s")]
    assert (await _state(engine, other_id))["state"] == "delivered"
