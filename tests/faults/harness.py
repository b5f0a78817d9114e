"""A private Kiln per fault test: its own nats-server and PostgreSQL, auth, tasks and workers
as real processes with short timeouts, a blocking client, and a figures recorder.

Short timeouts come from config only (no patched code), so every scenario runs the same
binaries a deployment runs, just with seconds where production has minutes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from faults import checks

from kiln.common.testing import NatsServer, PostgresServer
from kiln.common.testing.services import ServiceProcess
from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

ACK_WAIT = 2.0
"""JOB_ACK_WAIT_SECONDS of every scenario unless it says otherwise."""

PROCEDURAL_STEPS = 8
"""Layers the procedural renderer paints (background, 6 shapes, vignette): a render with
`step_delay` d takes about 8 d."""

BASE_ENV = {
    "LOG_LEVEL": "info",
    "JOB_ACK_WAIT_SECONDS": str(ACK_WAIT),
    "JOB_MAX_DELIVER": "4",
    "GRACE_PERIOD_SECONDS": "2",
    "HEALTH_PROBE_INTERVAL_SECONDS": "0.5",
    "NATS_RECONNECT_WAIT_SECONDS": "0.2",
    "NATS_CONNECT_TIMEOUT_SECONDS": "1",
    "DB_POOL_TIMEOUT_SECONDS": "2",
    "TASKS_DISPATCH_POLL_SECONDS": "0.1",
    "TASKS_DISPATCH_MAX_BACKOFF_SECONDS": "0.5",
    "TASKS_MAINTENANCE_INTERVAL_SECONDS": "0.5",
    "TASKS_WATCH_REFRESH_SECONDS": "1",
    "TASKS_MAX_ACTIVE_TASKS_PER_USER": "1000",
    "TASKS_MAX_WATCHERS_PER_USER": "1000",
    # Scenarios without workers check what reaches the stream: publish it all.
    "TASKS_DISPATCH_UNSERVED_WINDOW": "100000",
    "IMAGEGEN_FETCH_WAIT_SECONDS": "0.2",
    "IMAGEGEN_CHECK_INTERVAL_SECONDS": "0.2",
    "IMAGEGEN_RETRY_BACKOFF_MIN_SECONDS": "0.2",
    "IMAGEGEN_RETRY_BACKOFF_MAX_SECONDS": "1",
    "IMAGEGEN_PUBLISH_RETRY_DELAY_SECONDS": "0.5",
    "WORKER_HEARTBEAT_TTL_SECONDS": "3",
    # The instant renderer unless a scenario needs renders that take time.
    "IMAGEGEN_PROVIDER_STANDARD": "instant",
    "IMAGEGEN_PROVIDER_HIGH_PRIORITY": "instant",
}

FIGURES = Path(
    os.environ.get("KILN_FAULT_FIGURES", Path(tempfile.gettempdir()) / "kiln-fault-figures.jsonl")
)


def record(scenario: str, **figures: Any) -> None:
    """Appends one scenario's measured figures (JSON lines) for docs/RELIABILITY.md."""
    line = {"scenario": scenario, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    with FIGURES.open("a") as out:
        out.write(json.dumps(line, default=str) + "\n")


def slow(step_delay: float, queue: str = "STANDARD") -> dict[str, str]:
    """Worker env: `queue` renders with the procedural painter, `step_delay` s per layer."""
    return {
        f"IMAGEGEN_PROVIDER_{queue}": "procedural",
        f"IMAGEGEN_PROVIDER_OPTIONS_{queue}": json.dumps({"step_delay": step_delay}),
    }


def rss_bytes(process: ServiceProcess) -> int:
    """Resident memory of a service process now (Linux /proc)."""
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Client:
    """Blocking TaskService calls as one freshly registered user."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = tasks_pb2_grpc.TaskServiceStub(self.channel)
        self.token = token
        self.metadata = _auth(token)

    def request(
        self,
        n: int,
        *,
        name: str = "fault",
        prompt: str = "fault scenario {v}",
        queue: tasks_pb2.Queue = tasks_pb2.QUEUE_STANDARD,
        request_id: str = "",
        priority: int = 0,
        values: list[str] | None = None,
    ) -> tasks_pb2.CreateTaskRequest:
        """A task of `n` subtasks (one variable with n values), JPEG, 1:1, seeded."""
        request = tasks_pb2.CreateTaskRequest(
            task_name=name,
            prompt_template=prompt,
            request_id=request_id,
            priority=priority,
            settings=tasks_pb2.TaskSettings(
                ratio="1:1", seed=11, queue=queue, output_format=tasks_pb2.OUTPUT_FORMAT_JPEG
            ),
        )
        if values is None and n > 1000:
            # A variable holds at most 1,000 values: big tasks are a 100 x (n/100) product.
            assert n % 100 == 0, n
            request.prompt_template = f"{prompt} {{w}}"
            request.variables["v"].values.extend(f"value {i}" for i in range(100))
            request.variables["w"].values.extend(f"w{i}" for i in range(n // 100))
            return request
        request.variables["v"].values.extend(values or [f"value {i}" for i in range(n)])
        return request

    def create(self, n: int, *, timeout: float = 60, **options: Any) -> Any:
        """CreateTask; returns the Task."""
        return self.stub.CreateTask(
            self.request(n, **options), metadata=self.metadata, timeout=timeout
        ).task

    def get(self, task_id: str) -> Any:
        """GetTask; returns the Task."""
        return self.stub.GetTask(
            tasks_pb2.GetTaskRequest(task_id=task_id), metadata=self.metadata, timeout=10
        ).task

    def cancel(self, task_id: str) -> Any:
        """CancelTask; returns the Task."""
        return self.stub.CancelTask(
            tasks_pb2.CancelTaskRequest(task_id=task_id), metadata=self.metadata, timeout=10
        ).task

    def watch(self, task_id: str, after_version: int = 0, timeout: float = 120) -> Iterator[Any]:
        """WatchTask with subtasks; the call object is also a cancellable iterator."""
        call: Iterator[Any] = self.stub.WatchTask(
            tasks_pb2.WatchTaskRequest(
                task_id=task_id, after_version=after_version, include_subtasks=True
            ),
            metadata=self.metadata,
            timeout=timeout,
        )
        return call

    def close(self) -> None:
        """Closes the channel."""
        self.channel.close()


@dataclasses.dataclass
class Fault:
    """One scenario's private servers and, once started, its Kiln."""

    nats: NatsServer
    postgres: PostgresServer
    database_url: str
    data_dir: Path
    stack: KilnStack | None = None
    clients: list[Client] = dataclasses.field(default_factory=list)

    def start(
        self,
        *,
        workers: int = 1,
        worker_env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> KilnStack:
        """Migrates and starts auth, tasks and `workers` workers with BASE_ENV + overrides."""
        self.stack = KilnStack.start(
            self.nats.url,
            self.database_url,
            self.data_dir,
            worker_env=worker_env,
            workers=workers,
            extra_env={**BASE_ENV, **(extra_env or {})},
        )
        return self.stack

    @property
    def kiln(self) -> KilnStack:
        """The started stack."""
        assert self.stack is not None, "start() first"
        return self.stack

    def client(self) -> Client:
        """A client for a new user."""
        client = Client(self.kiln.tasks.target, self.kiln.token())
        self.clients.append(client)
        return client

    def add_worker(self, env: Mapping[str, str] | None = None) -> ServiceProcess:
        """One more worker process, serving when this returns."""
        return self.kiln.add_worker(env)

    def states(self, task_id: str | None = None) -> dict[str, int]:
        """Current subtasks by state."""
        return dict(checks.subtask_states(self.database_url, task_id))

    def wait_finished(self, within: float) -> float:
        """Waits until every subtask and task is terminal; returns the seconds it took."""
        return checks.wait_all_finished(self.database_url, within)

    def check(self) -> checks.Summary:
        """The shared G1/G2 invariant check, once the bus is quiet (late duplicates of
        finished jobs rendered and their events folded), so they are checked too."""
        checks.wait_until(lambda: checks.settled(self.nats.url), within=60, what="bus quiet")
        return checks.check_invariants(self.database_url, self.nats.url)

    def close(self) -> None:
        """Stops the stack and closes the clients (the fixtures stop the servers)."""
        for client in self.clients:
            client.close()
        if self.stack is not None:
            keep = os.environ.get("KILN_FAULT_KEEP_LOGS")
            if keep:  # for a post-mortem: the services' logs outlive the scenario
                for process in (self.stack.auth, self.stack.tasks, *self.stack.workers):
                    process.stop(timeout=10)
                    target = Path(keep) / f"{self.data_dir.name}-{process.name}.log"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(process.log_path, target)
            self.stack.close()
