"""NATS JetStream: connecting with reconnects, and provisioning what a service declares.

Each service declares the streams, consumers, key-value buckets and object stores it needs;
`provision()` creates them or brings their configuration up to date, and is safe to run
from every replica at every start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from kiln.common import metrics, tls
from kiln.common.settings import NatsSettings

log = structlog.get_logger("kiln.nats")


async def connect(
    settings: NatsSettings, name: str, on_disconnect: Callable[[], Awaitable[None]] | None = None
) -> Client:
    """Connects and keeps reconnecting forever: a broker outage must never end the process."""

    async def disconnected() -> None:
        log.warning("nats_disconnected")
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("nats_reconnected")
        metrics.NATS_RECONNECTS.inc()

    async def error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc), kind=type(exc).__name__)

    return await nats.connect(
        servers=[s.strip() for s in settings.nats_url.split(",") if s.strip()],
        name=name,
        connect_timeout=settings.nats_connect_timeout,
        reconnect_time_wait=settings.nats_reconnect_wait,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        ping_interval=5,
        max_outstanding_pings=2,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        **tls.nats_options(settings),
    )


async def ping(client: Client) -> bool:
    """Whether the connection is up and JetStream answers."""
    if not client.is_connected:
        return False
    await client.jetstream().account_info()
    return True


@dataclasses.dataclass(frozen=True)
class Topology:
    """Everything a service needs to exist in JetStream."""

    streams: Sequence[js_api.StreamConfig] = ()
    consumers: Sequence[tuple[str, js_api.ConsumerConfig]] = ()
    key_value: Sequence[js_api.KeyValueConfig] = ()
    object_stores: Sequence[js_api.ObjectStoreConfig] = ()


async def provision(js: JetStreamContext, topology: Topology) -> None:
    """Creates what is missing and updates what changed; idempotent."""
    for stream in topology.streams:
        await _ensure_stream(js, stream)
    for stream_name, consumer in topology.consumers:
        await js.add_consumer(stream_name, consumer)
    for kv in topology.key_value:
        await js.create_key_value(kv)
    for store in topology.object_stores:
        # nats-py overwrites config.bucket with its `bucket` argument, so pass both.
        await js.create_object_store(bucket=str(store.bucket), config=store)


async def _ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except js_errors.NotFoundError:
        await js.add_stream(config)
        log.info("stream_created", stream=config.name)
        return
    await js.update_stream(config)
