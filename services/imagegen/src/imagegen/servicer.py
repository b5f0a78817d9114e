"""gRPC adapter of the imagegen workers: proto <-> domain, nothing else."""

from __future__ import annotations

from kiln.imagegen.v1 import imagegen_pb2_grpc


class ImageGenServicer(imagegen_pb2_grpc.ImageGenServiceServicer):
    """ImageGenService; every RPC answers UNIMPLEMENTED until the imagegen issue lands."""
