"""Pulling from and publishing to JetStream in batches without waiting for what is not there.

nats-py's `fetch(n, timeout)` returns at once when messages are ready, but when none are it
makes a lingering request that waits until *n* messages arrived or the timeout passed: a
consumer fetching 500 at a time from a stream receiving 300 a second holds each event for
up to the whole timeout. `fetch_ready` waits for the first message only and then takes just
what is ready. `publish_all` sends many messages before awaiting any acknowledgement (one
round trip for the lot instead of one each) and says which were stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

READY_WAIT = 0.005
"""How long a fetch waits for messages the server has ready (a loopback round trip)."""

_TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)


async def fetch_ready(
    subscription: JetStreamContext.PullSubscription, batch: int, wait: float
) -> list[Msg]:
    """Up to `batch` messages: waits at most `wait` for the first, then takes only those
    ready now. Empty when nothing came within `wait`; other bus errors propagate."""
    try:
        return list(await subscription.fetch(batch, timeout=READY_WAIT))
    except _TIMEOUTS:
        pass  # nothing ready: wait for the first one below
    try:
        first = await subscription.fetch(1, timeout=wait)
    except _TIMEOUTS:
        return []
    if batch == 1:
        return list(first)
    try:
        more = await subscription.fetch(batch - 1, timeout=READY_WAIT)
    except _TIMEOUTS:
        more = []
    return [*first, *more]


async def publish_all(
    js: JetStreamContext,
    messages: Sequence[tuple[str, bytes, dict[str, str]]],
    ack_within: float,
) -> list[bool]:
    """Publishes (subject, payload, headers) messages without waiting between them.

    Returns, for each, whether JetStream acknowledged it within `ack_within` seconds; a bus
    failure is a False, never an exception."""
    pending: list[asyncio.Future[api.PubAck] | None] = []
    # No per-message stall timeout: nats-py would start a timer task for each message and
    # yield to the flusher after each (a write per message). One deadline covers the lot.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ack_within):
            for subject, payload, headers in messages:
                try:
                    pending.append(await js.publish_async(subject, payload, headers=headers))
                except Exception:  # disconnected, or over the client's limit: not sent
                    pending.append(None)
    pending += [None] * (len(messages) - len(pending))
    sent = [f for f in pending if f is not None]
    if sent:
        await asyncio.wait(sent, timeout=ack_within)
    stored = []
    for future in pending:
        ok = future is not None and future.done() and not future.cancelled()
        stored.append(ok and future is not None and future.exception() is None)
        if future is not None and not future.done():
            future.cancel()  # frees its slot; a late ack is ignored
    return stored
