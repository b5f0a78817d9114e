"""One stack for the whole security package, and the people and things the tests use."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from security import rpcs
from security.badtokens import BadTokens

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.stack import ADMIN_EMAIL, ADMIN_PASSWORD, USER_PASSWORD, KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc


@dataclasses.dataclass
class Person:
    """A signed-in account."""

    email: str
    password: str
    user_id: str
    token: str
    refresh_token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The authorization header."""
        return rpcs.bearer(self.token)


@dataclasses.dataclass
class World:
    """The stack, its channels, and everyone the matrix calls as."""

    stack: KilnStack
    channels: dict[str, grpc.Channel]
    owner: Person
    other: Person
    admin: Person
    deactivated: Person
    bad_tokens: BadTokens

    @property
    def auth(self) -> Any:
        """AuthService stub."""
        return auth_pb2_grpc.AuthServiceStub(self.channels[rpcs.AUTH])

    @property
    def tasks(self) -> Any:
        """TaskService stub."""
        return tasks_pb2_grpc.TaskServiceStub(self.channels[rpcs.TASKS])

    def sign_in(self, email: str, password: str) -> Person:
        """Logs in and returns the person."""
        return sign_in(self.auth, email, password)

    def register(self, prefix: str = "user") -> Person:
        """A fresh user, signed in."""
        return register(self.auth, prefix)

    def create_task(
        self,
        who: Person,
        *,
        queue: tasks_pb2.Queue = tasks_pb2.QUEUE_LUMINA,
        name: str = "security",
        tags: tuple[str, ...] = (),
        **settings: Any,
    ) -> tasks_pb2.Task:
        """A one-image task; on the lumina queue (which no worker serves) it stays pending."""
        request = tasks_pb2.CreateTaskRequest(
            task_name=name,
            prompt_template="a red cube",
            settings=tasks_pb2.TaskSettings(queue=queue, **settings),
            tags=list(tags),
        )
        task: tasks_pb2.Task = self.tasks.CreateTask(
            request, metadata=who.metadata, timeout=20
        ).task
        return task

    def cancelled_task(self, who: Person) -> tasks_pb2.Task:
        """A task that was cancelled while it waited: terminal, retryable."""
        task = self.create_task(who)
        cancelled: tasks_pb2.Task = self.tasks.CancelTask(
            tasks_pb2.CancelTaskRequest(task_id=task.id), metadata=who.metadata, timeout=20
        ).task
        return cancelled

    def finished_subtask(self, who: Person) -> tasks_pb2.Subtask:
        """A subtask with a stored image (rendered by the stack's worker)."""
        task = self.create_task(who, queue=tasks_pb2.QUEUE_STANDARD)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = self.tasks.GetTask(
                tasks_pb2.GetTaskRequest(task_id=task.id), metadata=who.metadata, timeout=20
            ).task
            if got.state == tasks_pb2.TASK_STATE_SUCCEEDED:
                subtasks = self.tasks.ListSubtasks(
                    tasks_pb2.ListSubtasksRequest(task_id=task.id),
                    metadata=who.metadata,
                    timeout=20,
                ).subtasks
                subtask: tasks_pb2.Subtask = subtasks[0]
                return subtask
            time.sleep(0.2)
        raise AssertionError(f"task {task.id} did not succeed:\n{self.stack.workers[0].log_tail()}")

    def logs(self) -> str:
        """Everything every process of the stack logged so far."""
        processes = [self.stack.auth, self.stack.tasks, *self.stack.workers]
        return "\n".join(p.log_path.read_text(errors="replace") for p in processes)


def sign_in(auth: Any, email: str, password: str) -> Person:
    """Logs in with a password and returns the person."""
    response = auth.Login(
        auth_pb2.LoginRequest(password=auth_pb2.PasswordCredential(email=email, password=password)),
        timeout=20,
    )
    return Person(
        email, password, response.user.id, response.tokens.access_token,
        response.tokens.refresh_token,
    )  # fmt: skip


def register(auth: Any, prefix: str = "user") -> Person:
    """A fresh user, signed in."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    auth.Register(
        auth_pb2.RegisterRequest(email=email, password=USER_PASSWORD, display_name=prefix),
        timeout=20,
    )
    return sign_in(auth, email, USER_PASSWORD)


def deactivate(auth: Any, admin: Person, who: Person) -> None:
    """Admin UpdateUser active=false."""
    auth.UpdateUser(
        auth_pb2.UpdateUserRequest(
            user=auth_pb2.User(id=who.user_id, active=False),
            update_mask=field_mask_pb2.FieldMask(paths=["active"]),
        ),
        metadata=admin.metadata,
        timeout=20,
    )


def wait_until_refused(tasks: Any, who: Person, seconds: float = 15.0) -> None:
    """Waits until the tasks service refuses `who`'s token (a deactivation takes a moment to
    travel through the auth_accounts bucket); fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            tasks.ListTasks(tasks_pb2.ListTasksRequest(), metadata=who.metadata, timeout=20)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return
            raise
        assert time.monotonic() < deadline, "the deactivation did not reach the tasks service"
        time.sleep(0.1)


@pytest.fixture(scope="package")
def world(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A stack shared by the security tests, with an owner, another user, the admin, and a
    user deactivated after signing in (whose unexpired access token every service refuses)."""
    data_dir: Path = tmp_path_factory.mktemp("security")
    # A NATS of its own: two stacks on one NATS share the job stream and event consumers,
    # and other tests start stacks on the session NATS while this one lives.
    with NatsServer() as nats, rpcs.own_stack(postgres_server, nats, data_dir) as stack:
        targets = {
            rpcs.AUTH: stack.auth.target,
            rpcs.TASKS: stack.tasks.target,
            rpcs.WORKER: stack.workers[0].target,
        }
        channels = {name: grpc.insecure_channel(target) for name, target in targets.items()}
        auth = auth_pb2_grpc.AuthServiceStub(channels[rpcs.AUTH])
        try:
            admin = sign_in(auth, ADMIN_EMAIL, ADMIN_PASSWORD)
            owner, other, deactivated = (register(auth, p) for p in ("owner", "other", "gone"))
            world = World(
                stack, channels, owner, other, admin, deactivated,
                BadTokens(data_dir / "keys", owner.token),
            )  # fmt: skip
            world.create_task(deactivated)  # something of their own, made while active
            deactivate(auth, admin, deactivated)
            wait_until_refused(world.tasks, deactivated)
            yield world
        finally:
            for channel in channels.values():
                channel.close()
