"""Fixtures for cross-service flows: the real auth, tasks and imagegen processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kiln_stack import Stack

from kiln.common.testing import AnyNats
from kiln.common.testing.services import ServiceProcess, migrate


@pytest.fixture
def stack(nats_server: AnyNats, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """auth + tasks + a worker on the session NATS and a fresh database."""
    env = {
        "NATS_URL": nats_server.url,
        "DATABASE_URL": database_url,
        "AUTH_KEY_DIR": str(tmp_path / "keys"),
        "AUTH_ARGON2_MEMORY_KIB": "8192",
        "AUTH_ARGON2_TIME_COST": "1",
        "HEALTH_PROBE_INTERVAL_SECONDS": "0.5",
        "AUTH_BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
        "AUTH_BOOTSTRAP_ADMIN_PASSWORD": "admin password 123",
    }
    migrate("auth", env)
    migrate("tasks", env)
    auth = ServiceProcess("auth", env).start()
    env["AUTH_TARGET"] = auth.target
    tasks = ServiceProcess("tasks", env)
    worker = ServiceProcess(
        "imagegen", {**env, "WORKER_QUEUES": "high_priority,standard"}, name="imagegen"
    )
    try:
        tasks.start(wait=False)
        worker.start(wait=False)
        tasks.wait_serving()
        worker.wait_serving()
        yield Stack(auth=auth, tasks=tasks, worker=worker, env=env)
    finally:
        for process in (worker, tasks, auth):
            process.close()
