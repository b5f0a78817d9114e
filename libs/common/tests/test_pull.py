"""Batch pulls that do not linger for a full batch, and batch publishes that say which
messages JetStream stored."""

from __future__ import annotations

import time

import nats
from nats.js import api

from kiln.common import pull
from kiln.common.testing import NatsServer

LINGER = 10.0
"""The wait given: a fetch that lingered for a full batch would take all of it."""


async def test_fetch_ready_takes_what_is_there_without_waiting_for_a_full_batch(
    private_nats: NatsServer,
) -> None:
    client = await nats.connect(private_nats.url)
    try:
        js = client.jetstream()
        await js.add_stream(name="PULLTEST", subjects=["pulltest.>"])
        subscription = await js.pull_subscribe("pulltest.>", durable="reader", stream="PULLTEST")
        started = time.monotonic()
        assert await pull.fetch_ready(subscription, 100, wait=0.2) == []
        assert time.monotonic() - started < LINGER / 2  # its own short wait, not more

        for i in range(3):
            await js.publish(f"pulltest.{i}", b"x")
        started = time.monotonic()
        messages = await pull.fetch_ready(subscription, 100, wait=LINGER)
        assert [m.subject for m in messages] == ["pulltest.0", "pulltest.1", "pulltest.2"]
        # Long before the wait a fetch lingering for a full batch would take.
        assert time.monotonic() - started < LINGER / 2
        for message in messages:
            await message.ack()

        # Idle at first: the first message ends the wait, and a later one is not waited for.
        await client.publish("pulltest.late", b"y")  # core publish: stored by the stream
        messages = await pull.fetch_ready(subscription, 100, wait=10.0)
        assert [m.subject for m in messages] == ["pulltest.late"]
    finally:
        await client.close()


async def test_publish_all_reports_each_message(private_nats: NatsServer) -> None:
    client = await nats.connect(private_nats.url)
    try:
        js = client.jetstream()
        await js.add_stream(name="PUBTEST", subjects=["pubtest.>"], duplicate_window=60)
        messages = [(f"pubtest.{i}", b"x", {"Nats-Msg-Id": f"m{i % 5}"}) for i in range(8)]
        stored = await pull.publish_all(js, messages, ack_within=5.0)
        assert stored == [True] * 8  # duplicates are acknowledged, and dropped by the stream
        info = await js.stream_info("PUBTEST")
        assert info.state.messages == 5

        stored = await pull.publish_all(
            js, [("nowhere.at.all", b"x", {})], ack_within=1.0
        )  # no stream listens: not stored
        assert stored == [False]
    finally:
        await client.close()


async def test_publish_all_while_disconnected_says_nothing_was_stored(
    private_nats: NatsServer,
) -> None:
    client = await nats.connect(private_nats.url, allow_reconnect=False)
    js = client.jetstream()
    await js.add_stream(name="GONETEST", subjects=["gonetest.>"], storage=api.StorageType.MEMORY)
    await client.close()
    stored = await pull.publish_all(js, [("gonetest.1", b"x", {})] * 3, ack_within=1.0)
    assert stored == [False, False, False]
