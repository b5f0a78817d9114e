"""Wires an imagegen worker process: NATS, token verification, gRPC server."""

from __future__ import annotations

import grpc

from imagegen.config import ImagegenConfig
from imagegen.servicer import ImageGenServicer
from kiln.common import bus, interceptors, jetstream, jwks, server
from kiln.common.tokens import TokenVerifier
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc

SERVICE_NAME = imagegen_pb2.DESCRIPTOR.services_by_name["ImageGenService"].full_name


async def serve(config: ImagegenConfig) -> None:
    """Runs a worker process until SIGTERM."""
    nc = await jetstream.connect(config, "imagegen")
    await jetstream.provision(nc.jetstream(), bus.worker_topology(config.worker_queues, config))
    auth_channel = grpc.aio.insecure_channel(config.auth_target)
    verifier = TokenVerifier(
        jwks.JwksKeySource(jwks.grpc_jwks_fetcher(auth_channel)),
        config.jwt_issuer,
        config.jwt_audience,
        config.jwt_leeway,
    )
    servicer = ImageGenServicer()
    host = server.ServiceHost(
        config,
        [
            server.GrpcService(
                SERVICE_NAME,
                lambda s: imagegen_pb2_grpc.add_ImageGenServiceServicer_to_server(servicer, s),
            )
        ],
        interceptors=interceptors.standard_interceptors(verifier),
        dependencies=[server.Dependency("nats", lambda: jetstream.ping(nc))],
    )
    await server.serve_until_stopped(host, [nc.drain, auth_channel.close])
