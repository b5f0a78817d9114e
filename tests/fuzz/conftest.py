"""One stack for the fuzz suite, on a NATS of its own, with a user, the admin, and real ids
for the generated requests to hit."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from security import rpcs
from security.badtokens import BadTokens
from security.conftest import Person, World, register, sign_in

from kiln.auth.v1 import auth_pb2_grpc
from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.stack import ADMIN_EMAIL, ADMIN_PASSWORD, KilnStack


@dataclasses.dataclass
class FuzzWorld:
    """The stack, channels per process, who calls, and ids worth hitting."""

    stack: KilnStack
    channels: dict[str, grpc.Channel]
    user: Person
    admin: Person
    ids: list[str]

    def processes(self) -> list[Any]:
        """Every service process of the stack."""
        return [self.stack.auth, self.stack.tasks, *self.stack.workers]


@pytest.fixture(scope="package")
def fuzz_world(
    postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzWorld]:
    """A stack whose tasks are capped at 50 subtasks (generated tasks stay cheap)."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    env = {"TASKS_MAX_SUBTASKS": "50"}
    with NatsServer() as nats, rpcs.own_stack(postgres_server, nats, data_dir, env) as stack:
        targets = {
            rpcs.AUTH: stack.auth.target,
            rpcs.TASKS: stack.tasks.target,
            rpcs.WORKER: stack.workers[0].target,
        }
        channels = {name: grpc.insecure_channel(target) for name, target in targets.items()}
        try:
            auth = auth_pb2_grpc.AuthServiceStub(channels[rpcs.AUTH])
            admin = sign_in(auth, ADMIN_EMAIL, ADMIN_PASSWORD)
            user = register(auth, "fuzzer")
            helper = World(
                stack, channels, user, user, admin, user, BadTokens(data_dir / "keys", user.token)
            )
            subtask = helper.finished_subtask(user)
            waiting = helper.create_task(user)
            ids = [user.user_id, admin.user_id, subtask.id, subtask.task_id, waiting.id]
            yield FuzzWorld(stack, channels, user, admin, ids)
        finally:
            for channel in channels.values():
                channel.close()
