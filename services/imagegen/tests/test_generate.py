"""ImageGenService over gRPC: Generate (stream of progress, then the image) and ListModels."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest
from fake_http_api import FakeApi
from google.rpc import error_details_pb2, status_pb2
from worker_harness import worker_config

from imagegen import app, imaging
from kiln.common import bus, jetstream
from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.tokens import TestSigner
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def _client(nats_url: str, **env: str) -> AsyncIterator[tuple[Any, list[tuple[str, str]]]]:
    settings = worker_config(nats_url, GRPC_HOST="127.0.0.1", **env)
    signer = TestSigner()
    nc = await nats.connect(nats_url)
    # The tasks service provisions the bus; a worker only waits for it.
    await jetstream.provision(nc.jetstream(), bus.tasks_topology(settings))
    runtime = await app.Rendering.start(settings, nc)
    host = app.build_host(settings, runtime, nc, signer.verifier())
    port = await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield (
            imagegen_pb2_grpc.ImageGenServiceStub(channel),
            [("authorization", f"Bearer {signer.token()}")],
        )
    finally:
        await channel.close()
        await host.server.stop(0)
        await host.monitor.stop()
        await runtime.stop(1)
        await nc.close()


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = status_pb2.Status()
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status.ParseFromString(value)
    found = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def test_generate_streams_progress_then_the_image(private_nats: NatsServer) -> None:
    """Generate renders one image with the queue's provider: progress messages, then one
    image whose bytes match its sha256 and carry provenance; the seed given is used."""
    async with _client(private_nats.url) as (stub, auth):
        request = imagegen_pb2.GenerateRequest(
            prompt="a quiet harbour", ratio="16:9", seed=42, format=imagegen_pb2.IMAGE_FORMAT_JPEG
        )
        responses = [r async for r in stub.Generate(request, metadata=auth)]

    kinds = [r.WhichOneof("update") for r in responses]
    assert kinds[-1] == "image"
    assert kinds.count("image") == 1
    assert "progress" in kinds
    image = responses[-1].image
    assert (image.width, image.height) == (1344, 768)
    assert image.content_type == "image/jpeg"
    assert image.seed == 42
    assert hashlib.sha256(image.data).hexdigest() == image.sha256
    assert imaging.read_provenance(image.data)["seed"] == 42


async def test_generate_rejects_bad_requests_with_field_violations(
    private_nats: NatsServer,
) -> None:
    """An empty prompt, an unknown ratio and a queue this worker does not serve are all
    reported at once as INVALID_ARGUMENT field violations; no token is UNAUTHENTICATED."""
    async with _client(private_nats.url) as (stub, auth):
        request = imagegen_pb2.GenerateRequest(prompt=" ", ratio="5:1", queue="lumina")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(request, metadata=auth)]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(_violations(caught.value)) == {"prompt", "ratio", "queue"}

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(imagegen_pb2.GenerateRequest(prompt="x"))]
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_generate_maps_provider_errors(private_nats: NatsServer, fake_api: FakeApi) -> None:
    """A provider's 5xx is UNAVAILABLE (the caller may retry); a refused prompt is
    INVALID_ARGUMENT on `prompt`."""
    fake_api.reply(503, {"detail": "model loading"})
    fake_api.reply(400, {"error": "prompt rejected by the safety filter"})
    options = {"base_url": fake_api.url, "api_style": "a1111", "timeout": "2"}
    env = {
        "IMAGEGEN_PROVIDER_STANDARD": "http",
        "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps(options),
    }
    async with _client(private_nats.url, **env) as (stub, auth):
        request = imagegen_pb2.GenerateRequest(prompt="a cat", queue="standard")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(request, metadata=auth)]
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(request, metadata=auth)]
        assert caught.value.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
        )


async def test_list_models_describes_every_queue(private_nats: NatsServer) -> None:
    """ListModels names every queue with its provider, model, ratios and sizes, marks the
    served ones, and names the polisher."""
    async with _client(private_nats.url, WORKER_QUEUES="standard") as (stub, auth):
        response = await stub.ListModels(imagegen_pb2.ListModelsRequest(), metadata=auth)

    by_queue = {m.queue: m for m in response.models}
    assert set(by_queue) == {"high_priority", "standard", "lumina"}
    assert by_queue["standard"].served
    assert not by_queue["lumina"].served
    assert by_queue["lumina"].model == "procedural-v1"  # from config, not instantiated
    assert by_queue["standard"].provider == "procedural"
    assert by_queue["standard"].model == "procedural-v1"
    standard = by_queue["standard"]
    assert dict(zip(standard.ratios, standard.sizes, strict=True))["1:1"] == "1024x1024"
    assert response.polisher == "rules"
