"""A stand-in AuthService whose RPCs misbehave on purpose, to test the interceptors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import errors, principal
from kiln.common.errors import FieldViolation
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

SECRET_TEXT = "postgresql://admin:hunter2@db/kiln"


class ScriptedAuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Register: typed error; GetJwks: public success; GetCurrentUser: needs a token;
    GetUser: unexpected exception; ListUsers: slow; Logout: dependency failure."""

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: Any
    ) -> auth_pb2.RegisterResponse:
        raise errors.InvalidArgument(
            [
                FieldViolation("email", "must be a valid email address"),
                FieldViolation("password", "must be at least 12 characters"),
            ]
        )

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Any
    ) -> auth_pb2.GetJwksResponse:
        caller = principal.current_or_none()
        return auth_pb2.GetJwksResponse(jwks_json="{}", issuer=caller.user_id if caller else "")

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: Any
    ) -> auth_pb2.GetCurrentUserResponse:
        caller = principal.current()
        return auth_pb2.GetCurrentUserResponse(
            user=auth_pb2.User(id=caller.user_id, email=caller.email)
        )

    async def GetUser(
        self, request: auth_pb2.GetUserRequest, context: Any
    ) -> auth_pb2.GetUserResponse:
        raise RuntimeError(f"cannot connect to {SECRET_TEXT}")

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: Any
    ) -> auth_pb2.ListUsersResponse:
        await asyncio.sleep(request.page_size / 10)
        return auth_pb2.ListUsersResponse(next_page_token="done")

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: Any
    ) -> auth_pb2.LogoutResponse:
        raise ConnectionRefusedError(SECRET_TEXT)

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: Any
    ) -> auth_pb2.ListApiKeysResponse:
        principal.require_admin()
        return auth_pb2.ListApiKeysResponse()


class ScriptedTaskServicer(tasks_pb2_grpc.TaskServiceServicer):
    """WatchTask: two updates then a typed error; GetImage: one chunk then a bug."""

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Any
    ) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
        for version in (1, 2):
            yield tasks_pb2.WatchTaskResponse(
                task=tasks_pb2.Task(id=request.task_id, version=version)
            )
        raise errors.NotFound("task", request.task_id)

    async def GetImage(
        self, request: tasks_pb2.GetImageRequest, context: Any
    ) -> AsyncIterator[tasks_pb2.GetImageResponse]:
        yield tasks_pb2.GetImageResponse(chunk=b"abc")
        raise KeyError(SECRET_TEXT)
