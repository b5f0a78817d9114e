"""Oversized messages from anonymous callers cost the services nothing lasting: each
service's receive limit fits its API, so a 15 MiB request is refused by the transport as
it arrives (RESOURCE_EXHAUSTED) instead of being read whole before the token check."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import grpc
from google.protobuf import message
from security import rpcs
from security.conftest import World

from kiln.auth.v1 import auth_pb2
from kiln.tasks.v1 import tasks_pb2

HUGE = 15 * 1024 * 1024


def _high_water_mib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_anonymous_15_mib_requests_are_refused_without_growing_the_process(
    world: World,
) -> None:
    """Ten concurrent anonymous 15 MiB CreateTasks to tasks and ten 15 MiB Registers to
    auth (public) are each RESOURCE_EXHAUSTED, and neither process's peak memory grows by
    more than a fraction of what reading them would take (150 MiB each)."""
    processes = [world.stack.tasks.process, world.stack.auth.process]
    assert all(p is not None for p in processes)
    before = {p.pid: _high_water_mib(p.pid) for p in processes if p is not None}
    create = tasks_pb2.CreateTaskRequest(task_name="x", prompt_template="p" * HUGE)
    register = auth_pb2.RegisterRequest(email="a@example.com", password="p" * HUGE)
    calls: list[tuple[str, str, message.Message]] = [
        ("TaskService.CreateTask", rpcs.TASKS, create)
    ] * 10
    calls += [("AuthService.Register", rpcs.AUTH, register)] * 10
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(
            pool.map(lambda c: rpcs.call(world.channels[c[1]], rpcs.rpc_named(c[0]), c[2]), calls)
        )
    assert {o.code for o in outcomes} == {grpc.StatusCode.RESOURCE_EXHAUSTED}, outcomes[0]
    for pid, peak in before.items():
        assert _high_water_mib(pid) - peak < 40, (pid, peak, _high_water_mib(pid))
