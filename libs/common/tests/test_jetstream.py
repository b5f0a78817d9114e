"""Provisioning JetStream from declared topology: idempotent, and updates on change."""

from __future__ import annotations

import asyncio
import dataclasses

import nats
from nats.aio.client import Client
from nats.js import api

from kiln.common import bus, jetstream
from kiln.common.settings import NatsSettings
from kiln.common.testing import NatsServer


async def test_provision_is_idempotent_and_updates(private_nats: NatsServer) -> None:
    """Running provision twice creates everything once; a changed setting is applied."""
    client = await jetstream.connect(NatsSettings(nats_url=private_nats.url), "test")
    try:
        js = client.jetstream()
        settings = bus.BusSettings()
        topology = bus.tasks_topology(settings)
        await jetstream.provision(js, topology)
        await jetstream.provision(js, topology)
        streams = {s.config.name for s in await js.streams_info()}
        assert {
            bus.JOBS_STREAM,
            bus.EVENTS_STREAM,
            bus.ADVISORIES_STREAM,
            f"OBJ_{bus.IMAGES_STORE}",
            f"KV_{bus.WORKERS_BUCKET}",
        } <= streams

        changed = dataclasses.replace(settings, dedupe_window=30.0)
        await jetstream.provision(js, bus.tasks_topology(changed))
        info = await js.stream_info(bus.JOBS_STREAM)
        assert info.config.duplicate_window == 30.0

        worker = bus.worker_topology(("standard",), settings)
        await jetstream.provision(js, worker)
        consumer = await js.consumer_info(bus.JOBS_STREAM, bus.worker_consumer("standard"))
        assert consumer.config.max_deliver == settings.job_max_deliver
        assert consumer.config.ack_policy == api.AckPolicy.EXPLICIT
        assert await jetstream.ping(client)
    finally:
        await client.close()


async def test_connection_survives_a_restart(private_nats: NatsServer) -> None:
    """The client reconnects by itself after the server comes back."""
    client = await jetstream.connect(
        NatsSettings(nats_url=private_nats.url, nats_reconnect_wait=0.1), "test"
    )
    try:
        private_nats.kill()
        private_nats.restart()
        # A request racing the disconnect is lost (and times out); later ones go through.
        deadline = asyncio.get_running_loop().time() + 15
        while not await _ping_quietly(client):
            assert asyncio.get_running_loop().time() < deadline, "no reconnect"
            await asyncio.sleep(0.1)
    finally:
        await client.close()


async def test_connect_names_the_client(private_nats: NatsServer) -> None:
    """Connections carry the service name (it shows in NATS monitoring)."""
    client = await jetstream.connect(NatsSettings(nats_url=private_nats.url), "tasks")
    try:
        assert isinstance(client, Client)
        assert client.options["name"] == "tasks"
    finally:
        await client.close()


async def _ping_quietly(client: Client) -> bool:
    try:
        return await asyncio.wait_for(jetstream.ping(client), 1)
    except (TimeoutError, nats.errors.Error):
        return False


async def test_provision_updates_limits_of_existing_buckets_and_store(
    private_nats: NatsServer,
) -> None:
    """A bucket or the image store made earlier gets the current limits on the next
    provision (a KV or object store cannot be created again with other limits), and a full
    image store drops its oldest images (discard old) instead of refusing new ones."""
    client = await jetstream.connect(NatsSettings(nats_url=private_nats.url), "test")
    try:
        js = client.jetstream()
        await jetstream.provision(js, bus.tasks_topology(bus.BusSettings()))
        changed = bus.BusSettings(
            images_max_age=600.0, images_max_bytes=50_000_000, cancellation_ttl=900.0
        )
        await jetstream.provision(js, bus.tasks_topology(changed))
        images = (await js.stream_info(f"OBJ_{bus.IMAGES_STORE}")).config
        assert images.max_age == 600.0 and images.max_bytes == 50_000_000
        assert images.discard == api.DiscardPolicy.OLD
        cancellations = (await js.stream_info(f"KV_{bus.CANCELLATIONS_BUCKET}")).config
        assert cancellations.max_age == 900.0
    finally:
        await client.close()
