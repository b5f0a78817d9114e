"""Async helpers the load tests share: sign-ups, task creation and watches over grpc.aio."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.stack import USER_PASSWORD
from kiln.tasks.v1 import tasks_pb2

WATCH_METHOD = "/kiln.tasks.v1.TaskService/WatchTask"


async def sign_up(auth_target: str) -> tuple[tuple[str, str], ...]:
    """Registers a user and returns the authorization metadata of their token."""
    email = f"load-{uuid.uuid4().hex[:12]}@example.com"
    async with grpc.aio.insecure_channel(auth_target) as channel:
        stub: Any = auth_pb2_grpc.AuthServiceStub(channel)
        await stub.Register(
            auth_pb2.RegisterRequest(email=email, password=USER_PASSWORD, display_name="load")
        )
        response = await stub.Login(
            auth_pb2.LoginRequest(
                password=auth_pb2.PasswordCredential(email=email, password=USER_PASSWORD)
            )
        )
    return (("authorization", f"Bearer {response.tokens.access_token}"),)


def task_request(
    queue: tasks_pb2.Queue = tasks_pb2.QUEUE_STANDARD,
) -> tasks_pb2.CreateTaskRequest:
    """A one-image task (JPEG, the cheapest encoding)."""
    return tasks_pb2.CreateTaskRequest(
        task_name="load",
        prompt_template="a red cube",
        settings=tasks_pb2.TaskSettings(
            queue=queue, ratio="1:1", output_format=tasks_pb2.OUTPUT_FORMAT_JPEG
        ),
    )
