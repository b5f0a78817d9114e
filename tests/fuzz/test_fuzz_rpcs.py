"""Fuzzing every RPC of every service through the real processes: requests generated from
each request descriptor (with a valid user or admin token), raw random bytes, and random
metadata. Only the codes listed per RPC may come back (never UNKNOWN or INTERNAL), no error
text carries a traceback or a Python class name, and every process is still SERVING after.

The default run keeps a small number of examples per RPC; the `long` tests run many more.
"""

from __future__ import annotations

import collections
import dataclasses

import grpc
import pytest
from fuzz import strategies
from fuzz.conftest import FuzzWorld
from google.protobuf import message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security import rpcs

from kiln.auth.v1 import auth_pb2
from kiln.tasks.v1 import tasks_pb2

C = grpc.StatusCode
# What a caller's request may legitimately end with on an RPC that checks its input.
CALLER_ERRORS = frozenset(
    {
        C.OK,
        C.INVALID_ARGUMENT,
        C.NOT_FOUND,
        C.FAILED_PRECONDITION,
        C.PERMISSION_DENIED,
        C.UNAUTHENTICATED,
        C.RESOURCE_EXHAUSTED,
        C.ALREADY_EXISTS,
    }
)
# RPCs with a narrower set; INVALID_ARGUMENT (undecodable bytes) and UNAUTHENTICATED (a
# malformed authorization header) are added for the raw and metadata cases.
NARROW: dict[str, frozenset[grpc.StatusCode]] = {
    "Health.Check": frozenset({C.OK, C.NOT_FOUND}),
    "Health.Watch": frozenset({C.OK}),
    "Health.List": frozenset({C.UNIMPLEMENTED}),
    "ServerReflection.ServerReflectionInfo": frozenset({C.OK}),
    "AuthService.GetJwks": frozenset({C.OK}),
    "AuthService.GetCurrentUser": frozenset({C.OK}),
    "AuthService.ListApiKeys": frozenset({C.OK, C.INVALID_ARGUMENT}),
    "SystemService.GetSystemStats": frozenset({C.OK, C.PERMISSION_DENIED}),
    "SystemService.GetQueueStats": frozenset({C.OK, C.PERMISSION_DENIED}),
    "SystemService.ListWorkers": frozenset({C.OK, C.PERMISSION_DENIED}),
    "ImageGenService.ListModels": frozenset({C.OK}),
}
# Rendering RPCs cost real time per example.
SLOW = {"ImageGenService.Generate": 4}
LEAKS = ("Traceback", "<class", 'File "')
STREAM_LIMIT = 10_000
"""More messages than any fuzzed stream sends (GetImage's chunks of a small image)."""
OPEN_ENDED = frozenset({"Health.Watch", "TaskService.WatchTask"})
"""Streams that may never end on their own (a watch of an unfinished task)."""
OPEN_STREAM_SECONDS = 0.05
"""How long such a stream is read after its first message before it is cut (counted OK):
long enough for an error the server sends right behind its first message, short enough for
the long run's 530 cases on each of three processes (Health.Watch of an unknown service
stays open by design)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """Examples per RPC for each kind of case."""

    structured: int
    raw: int
    metadata: int


DEFAULT = Budget(structured=20, raw=10, metadata=8)
LONG = Budget(structured=300, raw=150, metadata=80)


def allowed(rpc: rpcs.Rpc, *extra: grpc.StatusCode) -> frozenset[grpc.StatusCode]:
    """The codes `rpc` may end with."""
    return NARROW.get(rpc.name, CALLER_ERRORS) | set(extra)


def check(rpc: rpcs.Rpc, outcome: rpcs.Outcome, ok: frozenset[grpc.StatusCode]) -> None:
    """One call's outcome is allowed and leaks nothing."""
    assert outcome.code in ok, f"{rpc.name}: {outcome.code.name} {outcome.details!r}"
    if outcome.code == C.RESOURCE_EXHAUSTED and outcome.status() is None:
        # Not one of our limits (they carry details): the request was over the server's
        # size limit, or else the client refused oversized trailers (an echo too long).
        assert "larger than max" in outcome.details, f"{rpc.name}: {outcome.details!r}"
    text = outcome.all_text()
    assert not any(leak in text for leak in LEAKS), f"{rpc.name} leaked: {text!r}"


def send(
    world: FuzzWorld,
    rpc: rpcs.Rpc,
    payload: bytes | message.Message,
    metadata: list[tuple[str, str | bytes]],
) -> list[rpcs.Outcome]:
    """Calls `rpc` on every process that serves it (skipping a Logout of all sessions)."""
    if rpc.name == "AuthService.Logout" and ends_every_session(payload):
        # It would sign the fuzzer out everywhere and turn every later case into
        # UNAUTHENTICATED; tests/security/test_account_revocation.py covers it.
        return []
    timeout = 5 if rpc.name == "TaskService.WatchTask" else 15
    # Streams are read whole (an error after the first message counts); one that may stay
    # open for good (OPEN_ENDED) is cut a moment after its first message.
    return [
        rpcs.call(
            world.channels[host],
            rpc,
            payload,
            metadata,
            timeout=timeout,
            max_responses=STREAM_LIMIT,
            open_after=OPEN_STREAM_SECONDS if rpc.name in OPEN_ENDED else None,
        )
        for host in rpc.hosts
    ]


def ends_every_session(payload: bytes | message.Message) -> bool:
    """Whether a Logout payload asks to end all of the caller's sessions."""
    if isinstance(payload, bytes):
        try:
            payload = auth_pb2.LogoutRequest.FromString(payload)
        except message.DecodeError:
            return False
    return isinstance(payload, auth_pb2.LogoutRequest) and payload.all_sessions


def silent_allowed(rpc: rpcs.Rpc, request: message.Message) -> set[grpc.StatusCode]:
    """A watch resumed at the task's current version legitimately stays silent until the
    task changes, so our deadline ends it (one resumed past it is refused at once)."""
    if isinstance(request, tasks_pb2.WatchTaskRequest) and request.after_version > 0:
        return {C.DEADLINE_EXCEEDED}
    return set()


def assert_healthy(world: FuzzWorld) -> None:
    """Every process is alive and SERVING."""
    for process in world.processes():
        assert process.process is not None and process.process.poll() is None, process.log_tail()
        status = process.health(timeout=5)
        assert status == health_pb2.HealthCheckResponse.SERVING, (process.name, status)


def fuzz_structured(world: FuzzWorld, rpc: rpcs.Rpc, examples: int) -> None:
    seen: collections.Counter[str] = collections.Counter()
    strings = st.one_of(strategies.default_strings(), st.sampled_from(world.ids))
    requests = strategies.messages(rpc.method.input_type, strings=strings)

    @settings(
        max_examples=max(1, examples // SLOW.get(rpc.name, 1)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests, as_admin=st.booleans())
    def run(request: message.Message, as_admin: bool) -> None:
        who = world.admin if as_admin else world.user
        for outcome in send(world, rpc, request, list(who.metadata)):
            seen[outcome.code.name] += 1
            check(rpc, outcome, allowed(rpc, *silent_allowed(rpc, request)))

    run()
    print(f"{rpc.name} structured: {dict(seen)}")  # shown with -s: what the cases reached


def fuzz_raw(world: FuzzWorld, rpc: rpcs.Rpc, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.binary(max_size=300))
    def run(data: bytes) -> None:
        for outcome in send(world, rpc, data, list(world.user.metadata)):
            check(rpc, outcome, allowed(rpc, C.INVALID_ARGUMENT))

    run()


def fuzz_metadata(world: FuzzWorld, rpc: rpcs.Rpc, examples: int) -> None:
    empty = rpc.request_type()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(metadata=strategies.metadata(), with_token=st.booleans())
    def run(metadata: list[tuple[str, str | bytes]], with_token: bool) -> None:
        sent = [*world.user.metadata, *metadata] if with_token else metadata
        for outcome in send(world, rpc, empty, sent):
            check(rpc, outcome, allowed(rpc, C.UNAUTHENTICATED, C.INVALID_ARGUMENT))

    run()


def fuzz(world: FuzzWorld, rpc: rpcs.Rpc, budget: Budget) -> None:
    """All three kinds of cases for one RPC, then a health check of every process."""
    fuzz_structured(world, rpc, budget.structured)
    fuzz_raw(world, rpc, budget.raw)
    fuzz_metadata(world, rpc, budget.metadata)
    assert_healthy(world)


ALL = rpcs.all_rpcs()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rpc", ALL, ids=lambda rpc: rpc.name)
def test_fuzz_rpc(fuzz_world: FuzzWorld, rpc: rpcs.Rpc) -> None:
    """Generated requests, random bytes and random metadata get only allowed codes and
    leak no internals; all processes stay SERVING (a small budget per RPC)."""
    fuzz(fuzz_world, rpc, DEFAULT)


@pytest.mark.long
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("rpc", ALL, ids=lambda rpc: rpc.name)
def test_fuzz_rpc_long(fuzz_world: FuzzWorld, rpc: rpcs.Rpc) -> None:
    """The same checks with fifteen times the examples."""
    fuzz(fuzz_world, rpc, LONG)
