"""Runs a service's async main on uvloop, the event loop every Kiln process uses."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import uvloop


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs `main` to completion on a uvloop event loop."""
    uvloop.run(main)
