"""Generate within limits: each user's concurrent calls are capped per worker, a paused
queue refuses Generate, and oversized text is refused before anything renders."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest
from worker_harness import until, worker_config

from imagegen import app
from kiln.common import bus, jetstream
from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.tokens import TestSigner
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc

pytestmark = pytest.mark.timeout(60)
SLOW_STANDARD = {
    "IMAGEGEN_PROVIDER_STANDARD": "instant",
    "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps({"delay": 30}),
    "IMAGEGEN_GENERATE_MAX_PER_USER": "1",
}


@contextlib.asynccontextmanager
async def _worker(nats_url: str) -> AsyncIterator[tuple[app.Rendering, Any, TestSigner, Any]]:
    settings = worker_config(nats_url, GRPC_HOST="127.0.0.1", **SLOW_STANDARD)
    signer = TestSigner()
    nc = await nats.connect(nats_url)
    # The tasks service provisions the bus; a worker only waits for it.
    await jetstream.provision(nc.jetstream(), bus.tasks_topology(settings))
    runtime = await app.Rendering.start(settings, nc)
    host = app.build_host(settings, runtime, nc, signer.verifier())
    port = await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield runtime, imagegen_pb2_grpc.ImageGenServiceStub(channel), signer, nc
    finally:
        await channel.close()
        await host.server.stop(0)
        await host.monitor.stop()
        await runtime.stop(1)
        await nc.close()


def _as(signer: TestSigner, user: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {signer.token(user_id=user)}")]


async def _code(call: Any) -> grpc.StatusCode:
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_one_user_is_capped_and_others_are_not(private_nats: NatsServer) -> None:
    """With IMAGEGEN_GENERATE_MAX_PER_USER=1, a user's second concurrent Generate is
    RESOURCE_EXHAUSTED while another user's call is admitted; the slot frees when the
    first call ends (here: the client cancels it)."""
    async with _worker(private_nats.url) as (runtime, stub, signer, _nc):
        request = imagegen_pb2.GenerateRequest(prompt="a slow harbour")
        first = stub.Generate(request, metadata=_as(signer, "greedy"))
        await until(lambda: runtime.generator.slots.active.get("greedy") == 1)
        second = await _code(stub.Generate(request, metadata=_as(signer, "greedy")))
        assert second == grpc.StatusCode.RESOURCE_EXHAUSTED
        other = stub.Generate(request, metadata=_as(signer, "patient"))
        await until(lambda: runtime.generator.slots.active.get("patient") == 1)
        first.cancel()
        other.cancel()
        await until(lambda: not runtime.generator.slots.active)


async def test_a_paused_queue_refuses_generate(private_nats: NatsServer) -> None:
    """Once an operator pauses a queue (the queue_state bucket PauseQueue writes), Generate
    on it is FAILED_PRECONDITION with a message saying so; resumed, it is admitted."""
    async with _worker(private_nats.url) as (runtime, stub, signer, nc):
        kv = await nc.jetstream().key_value(bus.QUEUE_STATE_BUCKET)
        await kv.put("standard", b"paused")
        await until(lambda: runtime.controls.is_paused("standard"))
        request = imagegen_pb2.GenerateRequest(prompt="a harbour", queue="standard")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(request, metadata=_as(signer, "u"))]
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "paused" in (caught.value.details() or "")
        await kv.put("standard", b"active")
        await until(lambda: not runtime.controls.is_paused("standard"))
        call = stub.Generate(request, metadata=_as(signer, "u"))
        await until(lambda: runtime.generator.slots.active.get("u") == 1)
        call.cancel()


async def test_oversized_text_is_refused_by_the_text_limits(private_nats: NatsServer) -> None:
    """A 20 KB ratio or queue is INVALID_ARGUMENT naming the field (the table's default
    limit), not rendered nor echoed whole."""
    async with _worker(private_nats.url) as (_runtime, stub, signer, _nc):
        request = imagegen_pb2.GenerateRequest(prompt="x", ratio="1" * 20_000, queue="q" * 300)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(request, metadata=_as(signer, "u"))]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(caught.value.details() or "") < 600
