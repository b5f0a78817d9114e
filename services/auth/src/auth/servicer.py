"""gRPC adapter of the auth service: proto <-> domain, nothing else."""

from __future__ import annotations

from kiln.auth.v1 import auth_pb2_grpc


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """AuthService; every RPC answers UNIMPLEMENTED until the auth issue lands."""
