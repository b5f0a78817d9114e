"""Fixtures of the imagegen tests: a real local HTTP server standing in for external APIs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fake_http_api import FakeApi


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """A running scripted HTTP server, stopped after the test."""
    api = FakeApi()
    thread = threading.Thread(target=api.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield api
    api.stopping.set()
    api.server.shutdown()
    api.server.server_close()
    thread.join(timeout=5)
