"""Fault injection for tests only: IMAGEGEN_FAULT_CRASH_MARKER makes a job kill its worker.

It stands in for a job whose handler crashes the process every time (a segfaulting model,
say), to prove such a job ends through JetStream's max-deliveries path instead of a crash
loop. The setting is empty in every real deployment, which disables it.
"""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger("imagegen.faults")

CRASH_EXIT_CODE = 70


def crash_if_marked(marker: str, prompt: str) -> None:
    """Ends the process at once, without cleanup, when `marker` is set and in `prompt`."""
    if marker and marker in prompt:
        log.critical("fault_injected_crash")
        os._exit(CRASH_EXIT_CODE)
