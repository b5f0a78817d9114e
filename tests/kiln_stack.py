"""A running Kiln stack for cross-service tests: auth, tasks and a worker as processes."""

from __future__ import annotations

import dataclasses
import uuid

import grpc

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.services import ServiceProcess


@dataclasses.dataclass
class Stack:
    """A running Kiln: auth, tasks and one imagegen worker, each its own process."""

    auth: ServiceProcess
    tasks: ServiceProcess
    worker: ServiceProcess
    env: dict[str, str]

    def token(self, email: str | None = None, password: str = "correct horse battery") -> str:
        """Registers a fresh user and returns an access token for it."""
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        with grpc.insecure_channel(self.auth.target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            stub.Register(
                auth_pb2.RegisterRequest(
                    email=email, password=password, display_name=email.split("@")[0]
                )
            )
            response = stub.Login(
                auth_pb2.LoginRequest(
                    password=auth_pb2.PasswordCredential(email=email, password=password)
                )
            )
        return str(response.tokens.access_token)
