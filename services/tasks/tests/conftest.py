"""Fixtures for the tasks tests: a migrated database, a private NATS server per test and a
real tasks server in-process on port 0 with test tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kiln.common.testing import NatsServer
from kiln.common.testing.tokens import TestSigner
from tasks import app
from tasks import testing as h
from tasks.config import TasksConfig


@pytest.fixture(scope="session")
def signer() -> TestSigner:
    """Signs the tokens of every test user."""
    return TestSigner()


@pytest.fixture
def tasks_config(database_url: str, private_nats: NatsServer) -> TasksConfig:
    """A config on a fresh migrated database and a private NATS server."""
    cfg = h.make_config(database_url, private_nats.url)
    app.migrate(cfg)
    return cfg


@pytest.fixture
async def server(tasks_config: TasksConfig, signer: TestSigner) -> AsyncIterator[h.Running]:
    """A running tasks server."""
    running = await h.start(tasks_config, signer)
    yield running
    await h.stop(running)


@pytest.fixture
async def worker(server: h.Running, private_nats: NatsServer) -> AsyncIterator[h.FakeWorker]:
    """A scripted worker of the standard queue."""
    fake = await h.FakeWorker.connect(private_nats.url)
    yield fake
    await fake.close()


@pytest.fixture(autouse=True)
async def _dump_tasks_on_sigusr1() -> AsyncIterator[None]:
    """`kill -USR1 <pytest pid>` prints every asyncio task's stack (for hangs)."""
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import sys  # noqa: PLC0415

    loop = asyncio.get_running_loop()

    def dump() -> None:
        for task in asyncio.all_tasks(loop):
            print(f"--- {task.get_name()}", file=sys.stderr)
            task.print_stack(limit=30, file=sys.stderr)

    loop.add_signal_handler(signal.SIGUSR1, dump)
    yield
    loop.remove_signal_handler(signal.SIGUSR1)


@pytest.fixture
async def narrow(
    database_url: str, signer: TestSigner, private_nats: NatsServer
) -> AsyncIterator[h.Running]:
    """A tasks server that keeps at most 2 jobs per queue in flight, so some wait."""
    cfg = h.make_config(database_url, private_nats.url, TASKS_DISPATCH_WINDOW="2")
    app.migrate(cfg)
    running = await h.start(cfg, signer)
    yield running
    await h.stop(running)


@pytest.fixture
async def standard(narrow: h.Running, private_nats: NatsServer) -> AsyncIterator[h.FakeWorker]:
    """A scripted worker of the standard queue, beside the narrow server."""
    worker = await h.FakeWorker.connect(private_nats.url)
    yield worker
    await worker.close()
