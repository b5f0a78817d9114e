"""Fixtures for cross-service flows: the real auth, tasks and imagegen processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.common.testing import AnyNats
from kiln.common.testing.stack import KilnStack


@pytest.fixture
def stack(nats_server: AnyNats, database_url: str, tmp_path: Path) -> Iterator[KilnStack]:
    """auth + tasks + one worker (high_priority, standard) on the session NATS and a fresh
    database."""
    stack = KilnStack.start(
        nats_server.url,
        database_url,
        tmp_path,
        worker_env={"WORKER_QUEUES": "high_priority,standard"},
    )
    try:
        yield stack
    finally:
        stack.close()
