"""Capturing what a process logs, rendered as production renders it, for tests that read it."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import structlog

from kiln.common import logging as kiln_logging


@contextlib.contextmanager
def captured_json_logs(service: str) -> Iterator[io.StringIO]:
    """Configures logging as `service` does in production (JSON, debug level) and yields a
    buffer receiving every line; restores the previous configuration afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    kiln_logging.configure_logging(service, "debug", "json")
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()
