"""gRPC adapter of the imagegen workers: proto <-> domain, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from imagegen import generation
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc


class ImageGenServicer(imagegen_pb2_grpc.ImageGenServiceServicer):
    """ImageGenService: Generate renders one image; ListModels describes the queues."""

    def __init__(self, generator: generation.Generator, served: tuple[str, ...]) -> None:
        self._generator = generator
        self._served = served

    async def Generate(
        self, request: imagegen_pb2.GenerateRequest, context: Any
    ) -> AsyncIterator[imagegen_pb2.GenerateResponse]:
        """A stream of progress, then the image."""
        spec = generation.validate(request, self._served)
        async for response in self._generator.generate(spec):
            yield response

    async def ListModels(
        self, request: imagegen_pb2.ListModelsRequest, context: Any
    ) -> imagegen_pb2.ListModelsResponse:
        """The queues, their providers and sizes."""
        return self._generator.list_models()
