"""A stack for load tests: its own NATS (whose pid and subscriptions we measure), the
session PostgreSQL, and limits raised where a per-user policy would get in the way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from security import rpcs

from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.stack import KilnStack


@pytest.fixture
def load_stack(
    postgres_server: Any, private_nats: NatsServer, tmp_path: Path
) -> Iterator[tuple[KilnStack, NatsServer]]:
    """auth + tasks + one worker on a private NATS."""
    env = {
        "TASKS_MAX_ACTIVE_TASKS_PER_USER": "100000",
        "TASKS_MAX_WATCHERS_PER_USER": "1000",
        "WORKER_CONCURRENCY": "4",
    }
    with rpcs.own_stack(postgres_server, private_nats, tmp_path, env) as stack:
        yield stack, private_nats
