"""Demotion, deactivation and "log out everywhere" reach every service within seconds, for
access tokens already issued: auth, tasks and an imagegen worker as separate processes
(KilnStack), the change travelling through the auth_accounts bucket on a real NATS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.stack import USER_PASSWORD, KilnStack
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

# The promise is "within a few seconds"; the bucket usually delivers in milliseconds.
PROPAGATION_SECONDS = 5.0


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def sign_in(auth: auth_pb2_grpc.AuthServiceStub, email: str) -> str:
    """An access token for an existing account."""
    response = auth.Login(
        auth_pb2.LoginRequest(
            password=auth_pb2.PasswordCredential(email=email, password=USER_PASSWORD)
        ),
        timeout=20,
    )
    return str(response.tokens.access_token)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The code a blocking call ends with."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            next(result)  # a server stream: its first message
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def becomes(expected: grpc.StatusCode, call: Callable[[], object]) -> float:
    """Polls `call` until it ends with `expected`; returns the seconds that took. Fails
    after PROPAGATION_SECONDS."""
    started = time.monotonic()
    while True:
        code = code_of(call)
        if code == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < PROPAGATION_SECONDS, f"still {code.name}"
        time.sleep(0.05)


@pytest.mark.long
@pytest.mark.timeout(180)
def test_demotion_deactivation_and_logout_everywhere_reach_every_service(
    stack: KilnStack,
) -> None:
    """With tokens issued before the change: a demoted admin gets PERMISSION_DENIED from the
    tasks service's admin RPCs (GetSystemStats, PauseQueue); a deactivated user gets
    UNAUTHENTICATED from CreateTask and from an imagegen worker's Generate; after Logout
    with all_sessions the old token is UNAUTHENTICATED in tasks and imagegen while a new
    sign-in works. Each within a few seconds of the change."""
    with (
        grpc.insecure_channel(stack.auth.target) as auth_channel,
        grpc.insecure_channel(stack.tasks.target) as tasks_channel,
        grpc.insecure_channel(stack.workers[0].target) as worker_channel,
    ):
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        tasks = tasks_pb2_grpc.TaskServiceStub(tasks_channel)
        system = tasks_pb2_grpc.SystemServiceStub(tasks_channel)
        worker = imagegen_pb2_grpc.ImageGenServiceStub(worker_channel)
        admin = stack.admin_token()

        second_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        second = auth.CreateUser(
            auth_pb2.CreateUserRequest(
                email=second_email, password=USER_PASSWORD, display_name="second",
                role=auth_pb2.ROLE_ADMIN,
            ),
            metadata=bearer(admin), timeout=20,
        ).user  # fmt: skip
        second_token = sign_in(auth, second_email)
        user_email = f"user-{uuid.uuid4().hex[:8]}@example.com"
        user_token = stack.token(user_email)
        user_id = auth.GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=bearer(user_token), timeout=20
        ).user.id
        leaving_email = f"leaving-{uuid.uuid4().hex[:8]}@example.com"
        leaving_token = stack.token(leaving_email)

        def stats(token: str) -> Callable[[], object]:
            return lambda: system.GetSystemStats(
                tasks_pb2.GetSystemStatsRequest(), metadata=bearer(token), timeout=20
            )

        def pause(token: str) -> Callable[[], object]:
            return lambda: system.PauseQueue(
                tasks_pb2.PauseQueueRequest(queue=tasks_pb2.QUEUE_LUMINA),
                metadata=bearer(token), timeout=20,
            )  # fmt: skip

        def create(token: str) -> Callable[[], object]:
            return lambda: tasks.CreateTask(
                tasks_pb2.CreateTaskRequest(
                    task_name="revocation", prompt_template="a cube",
                    settings=tasks_pb2.TaskSettings(queue=tasks_pb2.QUEUE_LUMINA),
                ),
                metadata=bearer(token), timeout=20,
            )  # fmt: skip

        def listing(token: str) -> Callable[[], object]:
            return lambda: tasks.ListTasks(
                tasks_pb2.ListTasksRequest(), metadata=bearer(token), timeout=20
            )

        def generate(token: str) -> Callable[[], object]:
            return lambda: worker.Generate(
                imagegen_pb2.GenerateRequest(
                    prompt="a red cube", ratio="1:1", seed=1,
                    format=imagegen_pb2.IMAGE_FORMAT_JPEG,
                ),
                metadata=bearer(token), timeout=30,
            )  # fmt: skip

        assert code_of(stats(second_token)) == grpc.StatusCode.OK
        assert code_of(create(user_token)) == grpc.StatusCode.OK
        assert code_of(generate(user_token)) == grpc.StatusCode.OK
        assert code_of(generate(leaving_token)) == grpc.StatusCode.OK

        auth.UpdateUser(
            auth_pb2.UpdateUserRequest(
                user=auth_pb2.User(id=second.id, role=auth_pb2.ROLE_USER),
                update_mask=field_mask_pb2.FieldMask(paths=["role"]),
            ),
            metadata=bearer(admin), timeout=20,
        )  # fmt: skip
        becomes(grpc.StatusCode.PERMISSION_DENIED, stats(second_token))
        assert code_of(pause(second_token)) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(listing(second_token)) == grpc.StatusCode.OK  # still a user

        auth.UpdateUser(
            auth_pb2.UpdateUserRequest(
                user=auth_pb2.User(id=user_id, active=False),
                update_mask=field_mask_pb2.FieldMask(paths=["active"]),
            ),
            metadata=bearer(admin), timeout=20,
        )  # fmt: skip
        becomes(grpc.StatusCode.UNAUTHENTICATED, create(user_token))
        becomes(grpc.StatusCode.UNAUTHENTICATED, generate(user_token))

        auth.Logout(
            auth_pb2.LogoutRequest(all_sessions=True), metadata=bearer(leaving_token), timeout=20
        )
        becomes(grpc.StatusCode.UNAUTHENTICATED, listing(leaving_token))
        becomes(grpc.StatusCode.UNAUTHENTICATED, generate(leaving_token))
        fresh = sign_in(auth, leaving_email)  # at once: a new sign-in is a new session
        assert code_of(listing(fresh)) == grpc.StatusCode.OK
        assert code_of(generate(fresh)) == grpc.StatusCode.OK
