"""The service processes as a platform sees them: start-up checks, health tied to the real
dependencies, reflection, and a clean exit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from kiln.common.testing import NatsServer, PostgresServer
from kiln.common.testing.services import ServiceProcess, migrate

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRPCURL = Path(sys.executable).with_name("grpcurl")


@pytest.fixture
def stack_env(private_nats: NatsServer, private_postgres: PostgresServer) -> dict[str, str]:
    database_url = private_postgres.create_database("kiln")
    env = {
        "NATS_URL": private_nats.url,
        "DATABASE_URL": database_url,
        "AUTH_TARGET": "127.0.0.1:1",
        "HEALTH_PROBE_INTERVAL_SECONDS": "0.2",
        "DB_POOL_TIMEOUT_SECONDS": "1",
        "NATS_RECONNECT_WAIT_SECONDS": "0.2",
    }
    migrate("tasks", env)
    return env


@pytest.fixture
def tasks_process(stack_env: dict[str, str]) -> Iterator[ServiceProcess]:
    with ServiceProcess("tasks", stack_env) as process:
        yield process


def _grpcurl(*args: str) -> str:
    result = subprocess.run(
        [str(GRPCURL), "-plaintext", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout


def test_reflection_lists_services(tasks_process: ServiceProcess) -> None:
    """grpcurl can list the services through reflection and check health."""
    listed = _grpcurl(tasks_process.target, "list").split()
    assert {
        "kiln.tasks.v1.TaskService",
        "kiln.tasks.v1.SystemService",
        "grpc.health.v1.Health",
    } <= set(listed)
    health = json.loads(_grpcurl(tasks_process.target, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}


def test_health_follows_nats(tasks_process: ServiceProcess, private_nats: NatsServer) -> None:
    """Health goes NOT_SERVING while NATS is down and SERVING again after it restarts;
    the liveness service stays SERVING throughout, so Kubernetes does not restart pods."""
    private_nats.kill()
    tasks_process.wait_health(NOT_SERVING, timeout=15)
    assert tasks_process.health(service="liveness") == SERVING
    private_nats.restart()
    tasks_process.wait_health(SERVING, timeout=20)


def test_health_follows_postgres(
    tasks_process: ServiceProcess, private_postgres: PostgresServer
) -> None:
    """Health goes NOT_SERVING while PostgreSQL is down and SERVING again after it restarts."""
    private_postgres.kill()
    tasks_process.wait_health(NOT_SERVING, timeout=15)
    private_postgres.restart()
    tasks_process.wait_health(SERVING, timeout=30)


def test_sigterm_exits_cleanly(tasks_process: ServiceProcess) -> None:
    """SIGTERM stops the service with exit code 0."""
    assert tasks_process.stop() == 0


def test_unmigrated_schema_waits_not_serving(
    private_nats: NatsServer, private_postgres: PostgresServer
) -> None:
    """A service whose schema is older than its code does not exit: it logs how to migrate,
    answers health NOT_SERVING (liveness SERVING, so Kubernetes does not restart it), and
    starts serving by itself once the migrations have run."""
    env = {"NATS_URL": private_nats.url, "DATABASE_URL": private_postgres.create_database("empty")}
    process = ServiceProcess("tasks", env).start(wait=False)
    try:
        process.wait_health(NOT_SERVING, timeout=30)
        assert process.health(service="liveness") == SERVING
        assert "schema_not_current" in process.log_tail()
        assert "python -m tasks migrate" in process.log_tail()
        migrate("tasks", env)
        process.wait_health(SERVING, timeout=30)
    finally:
        process.close()


@pytest.mark.parametrize(
    ("variable", "value"), [("DATABASE_URL", ""), ("GRPC_PORT", "x"), ("JOB_MAX_DELIVER", "0")]
)
def test_bad_config_names_the_variable(variable: str, value: str) -> None:
    """A missing or malformed setting stops the start with exit code 2 and its name."""
    env = {"DATABASE_URL": "postgresql://127.0.0.1:1/none", variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "tasks"],
        env={"PATH": "", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
