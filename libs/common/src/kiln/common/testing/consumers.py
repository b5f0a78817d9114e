"""Waiting on JetStream consumers in tests: a condition instead of a sleep."""

from __future__ import annotations

from nats.js import JetStreamContext


async def caught_up(js: JetStreamContext, stream: str, consumer: str) -> bool:
    """Whether `consumer` has handled everything on `stream` so far: nothing left to deliver
    and nothing delivered still unacknowledged. Everything published (and acknowledged by
    JetStream) before this returns True has been processed by the consumer's owner."""
    info = await js.consumer_info(stream, consumer)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)
