"""NATS JetStream: connecting with reconnects, and provisioning what a service declares.

Each service declares the streams, consumers, key-value buckets and object stores it needs;
`provision()` creates them or brings their configuration up to date, and is safe to run
from every replica at every start.
"""

from __future__ import annotations

import asyncio
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
    """Connects and keeps reconnecting forever: a broker outage must never end the process.

    `name` is the service's role (tasks, imagegen, auth): it names the connection and its
    reply inbox. Credentials come from NATS_USER and NATS_PASSWORD(_FILE)."""

    async def disconnected() -> None:
        log.warning("nats_disconnected")
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("nats_reconnected")
        metrics.NATS_RECONNECTS.inc()

    async def error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc), kind=type(exc).__name__)

    user, password = settings.nats_credentials()
    return await nats.connect(
        servers=[s.strip() for s in settings.nats_url.split(",") if s.strip()],
        name=name,
        user=user,
        password=password,
        # Replies to this service arrive on its own inbox subjects (see kiln.common.natsauth).
        inbox_prefix=f"_INBOX.{name}",
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
    """Creates what is missing and updates what changed (replicas and limits too);
    idempotent."""
    for stream in topology.streams:
        await _ensure_stream(js, stream)
    for stream_name, consumer in topology.consumers:
        await js.add_consumer(stream_name, consumer)
    for kv in topology.key_value:
        await _ensure_key_value(js, kv)
    for store in topology.object_stores:
        await _ensure_object_store(js, store)


async def wait_until_provisioned(
    js: JetStreamContext, topology: Topology, poll: float = 0.25
) -> None:
    """Returns once everything in `topology` exists; for a service that may not create it
    (a worker waits for the tasks service, which owns the bus). Logs what it waits for
    whenever that changes."""
    reported = None
    while True:
        missing = await _first_missing(js, topology)
        if missing is None:
            if reported is not None:
                log.info("bus_provisioned")
            return
        if missing != reported:
            log.info("bus_not_provisioned_yet", missing=missing)
            reported = missing
        await asyncio.sleep(poll)


async def _first_missing(js: JetStreamContext, topology: Topology) -> str | None:
    streams = [s.name or "" for s in topology.streams]
    streams += [f"KV_{kv.bucket}" for kv in topology.key_value]
    streams += [f"OBJ_{store.bucket}" for store in topology.object_stores]
    for name in streams:
        try:
            await js.stream_info(name)
        except js_errors.NotFoundError:
            return name
    for stream_name, consumer in topology.consumers:
        try:
            await js.consumer_info(stream_name, consumer.durable_name or "")
        except js_errors.NotFoundError:
            return f"{stream_name}/{consumer.durable_name}"
    return None


async def _ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except js_errors.NotFoundError:
        await js.add_stream(config)
        log.info("stream_created", stream=config.name)
        return
    await js.update_stream(config)


async def _ensure_key_value(js: JetStreamContext, config: js_api.KeyValueConfig) -> None:
    name = f"KV_{config.bucket}"
    try:
        info = await js.stream_info(name)
    except js_errors.NotFoundError:
        await js.create_key_value(config)
        log.info("bucket_created", bucket=config.bucket)
        return
    # A bucket's stream cannot be created again with other limits; update it in place.
    await _update_limits(
        js,
        info.config,
        replicas=config.replicas,
        max_age=config.ttl or 0.0,
        max_bytes=config.max_bytes if config.max_bytes and config.max_bytes > 0 else -1,
        discard=info.config.discard,
    )


async def _ensure_object_store(js: JetStreamContext, config: js_api.ObjectStoreConfig) -> None:
    name = f"OBJ_{config.bucket}"
    try:
        info = await js.stream_info(name)
    except js_errors.NotFoundError:
        # nats-py overwrites config.bucket with its `bucket` argument, so pass both.
        await js.create_object_store(bucket=str(config.bucket), config=config)
        log.info("object_store_created", bucket=config.bucket)
        info = await js.stream_info(name)
    # A full store drops its oldest objects instead of refusing new ones (nats-py creates
    # object stores with discard=new): a size limit is a retention limit.
    await _update_limits(
        js,
        info.config,
        replicas=config.replicas,
        max_age=config.ttl or 0.0,
        max_bytes=config.max_bytes if config.max_bytes and config.max_bytes > 0 else -1,
        discard=js_api.DiscardPolicy.OLD,
    )


async def _update_limits(
    js: JetStreamContext,
    current: js_api.StreamConfig,
    *,
    replicas: int,
    max_age: float,
    max_bytes: int,
    discard: js_api.DiscardPolicy | None,
) -> None:
    window = current.duplicate_window
    if max_age and window and window > max_age:
        window = max_age  # the server refuses a dedupe window longer than the retention
    wanted = dataclasses.replace(
        current,
        num_replicas=replicas,
        max_age=max_age,
        max_bytes=max_bytes,
        discard=discard,
        duplicate_window=window,
    )
    before = (current.num_replicas, current.max_age or 0.0, current.max_bytes, current.discard)
    after = (replicas, max_age, max_bytes, discard)
    if before != after:
        await js.update_stream(wanted)
        log.info("stream_limits_updated", stream=current.name, replicas=replicas)
