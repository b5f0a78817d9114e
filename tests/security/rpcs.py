"""Every RPC Kiln serves, read from the service descriptors, and one way to call any of them.

The security matrix and the fuzz suite both walk `all_rpcs()`, so an RPC added to a proto
shows up in both at once (and fails the matrix until its table has a row). `call` sends
already-serialised bytes over a raw channel method, so the same path carries well-formed
messages, hand-made bad ones and random bytes alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor, message, message_factory
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from kiln.auth.v1 import auth_pb2
from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.postgres_server import PostgresServer
from kiln.common.testing.stack import KilnStack
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2
from kiln.tasks.v1 import tasks_pb2

# Which process serves which service; health and reflection are served by all of them.
AUTH, TASKS, WORKER = "auth", "tasks", "worker"
_HOSTS: dict[str, tuple[str, ...]] = {
    "kiln.auth.v1.AuthService": (AUTH,),
    "kiln.tasks.v1.TaskService": (TASKS,),
    "kiln.tasks.v1.SystemService": (TASKS,),
    "kiln.imagegen.v1.ImageGenService": (WORKER,),
    "grpc.health.v1.Health": (AUTH, TASKS, WORKER),
    "grpc.reflection.v1alpha.ServerReflection": (AUTH, TASKS, WORKER),
}
_FILES = (auth_pb2, tasks_pb2, imagegen_pb2, jobs_pb2, health_pb2, reflection_pb2)
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclasses.dataclass(frozen=True)
class Rpc:
    """One method of one service, as its descriptor describes it."""

    method: descriptor.MethodDescriptor

    @property
    def service(self) -> str:
        """The service's full name, e.g. `kiln.tasks.v1.TaskService`."""
        return str(self.method.containing_service.full_name)

    @property
    def name(self) -> str:
        """`Service.Method` with the short service name, for tables and test ids."""
        return f"{self.method.containing_service.name}.{self.method.name}"

    @property
    def path(self) -> str:
        """The HTTP/2 path gRPC calls it by."""
        return f"/{self.service}/{self.method.name}"

    @property
    def hosts(self) -> tuple[str, ...]:
        """The processes that serve it."""
        return _HOSTS[self.service]

    @property
    def request_type(self) -> type[message.Message]:
        """The request message class."""
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def server_streaming(self) -> bool:
        """Whether responses come as a stream."""
        return bool(self.method.server_streaming)

    @property
    def client_streaming(self) -> bool:
        """Whether requests go as a stream."""
        return bool(self.method.client_streaming)


def all_rpcs() -> list[Rpc]:
    """Every RPC of every service in Kiln's protos, plus health and reflection."""
    found: list[Rpc] = []
    for module in _FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name not in _HOSTS:
                raise AssertionError(f"{service.full_name} has no known host: add it to _HOSTS")
            found.extend(Rpc(method) for method in service.methods)
    return found


def rpc_named(name: str) -> Rpc:
    """The RPC called `Service.Method`."""
    return next(rpc for rpc in all_rpcs() if rpc.name == name)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a call ended: its code, message, trailers and how many responses came first."""

    code: grpc.StatusCode
    details: str
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    responses: tuple[bytes, ...] = ()

    def status(self) -> status_pb2.Status | None:
        """The rich `google.rpc.Status` from the trailers, if the server sent one."""
        for key, value in self.trailers:
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                return status_pb2.Status.FromString(value)
        return None

    def all_text(self) -> str:
        """The message and every detail, as text, for leak checks."""
        status = self.status()
        return f"{self.details}\n{status}" if status is not None else self.details


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    """The authorization metadata for `token` (none for None)."""
    return () if token is None else (("authorization", f"Bearer {token}"),)


def call(
    channel: grpc.Channel,
    rpc: Rpc,
    payload: bytes | message.Message,
    metadata: Sequence[tuple[str, str | bytes]] = (),
    *,
    timeout: float = 20.0,
    max_responses: int = 50,
    open_after: float | None = None,
) -> Outcome:
    """Calls `rpc` with `payload` (a message or raw bytes). A stream that is still open
    after `max_responses` messages is cancelled and counts as OK: Health.Watch and a watch
    of an unfinished task never end on their own. With `open_after`, a stream is also
    cancelled (and counts as OK, with what arrived) once it has stayed open that many
    seconds after its first message: the whole of a stream that ends, and what an endless
    one sends, are read, without waiting for the deadline."""
    data = payload if isinstance(payload, bytes) else payload.SerializeToString()
    if rpc.client_streaming:
        method: Any = channel.stream_stream(rpc.path)
        pending: Any = method(iter([data]), metadata=list(metadata), timeout=timeout)
    elif rpc.server_streaming:
        pending = channel.unary_stream(rpc.path)(data, metadata=list(metadata), timeout=timeout)
    else:
        unary = channel.unary_unary(rpc.path)
        try:
            response, done = unary.with_call(data, metadata=list(metadata), timeout=timeout)
        except grpc.RpcError as error:
            return _failed(error)
        return Outcome(grpc.StatusCode.OK, "", tuple(done.trailing_metadata() or ()), (response,))
    responses: list[bytes] = []
    timer: threading.Timer | None = None
    try:
        for response in pending:
            responses.append(response)
            if len(responses) >= max_responses:
                pending.cancel()
                return Outcome(grpc.StatusCode.OK, "", (), tuple(responses))
            if open_after is not None and timer is None:
                timer = threading.Timer(open_after, pending.cancel)
                timer.start()
    except grpc.RpcError as error:
        if (
            timer is not None
            and timer.finished.is_set()
            and error.code() == grpc.StatusCode.CANCELLED
        ):
            return Outcome(grpc.StatusCode.OK, "", (), tuple(responses))  # still open: fine
        return dataclasses.replace(_failed(error), responses=tuple(responses))
    finally:
        if timer is not None:
            timer.cancel()
    return Outcome(
        grpc.StatusCode.OK, "", tuple(pending.trailing_metadata() or ()), tuple(responses)
    )


def _failed(error: grpc.RpcError) -> Outcome:
    call_: Any = error  # a grpc.Call as well as an RpcError
    return Outcome(call_.code(), call_.details() or "", tuple(call_.trailing_metadata() or ()))


def random_id() -> str:
    """A well-formed id that names nothing."""
    return str(uuid.uuid4())


@contextlib.contextmanager
def own_stack(
    postgres: PostgresServer | Any,
    nats: NatsServer | Any,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[KilnStack]:
    """A stack on the session servers with a database of its own, for a module or package
    of tests (the `stack` fixture is per test). Workers serve high_priority and standard:
    a lumina task therefore waits for ever, which keeps it in a known state."""
    postgres.ensure_running()
    nats.ensure_running()
    name = f"sec_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    kiln = KilnStack.start(
        nats.url,
        url,
        data_dir,
        worker_env={"WORKER_QUEUES": "high_priority,standard"},
        extra_env=extra_env,
    )
    try:
        yield kiln
    finally:
        kiln.close()
        postgres.ensure_running()
        postgres.drop_database(name)
