"""T3: renders three times longer than ack_wait stay with their worker thanks to heartbeats."""

from __future__ import annotations

import time

import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus

STEP = 0.8  # 6.4 s per render = 3.2 x ack_wait
PROBE_TIMEOUT = 0.5


@pytest.mark.long
@pytest.mark.timeout(90)
def test_long_renders_are_not_redelivered_and_never_block_the_loop(fault: Fault) -> None:
    """Two renders of 3.2 x ack_wait each finish on their first delivery (in_progress keeps the
    lease): the consumer redelivered nothing. Meanwhile the worker's gRPC health answers every
    probe within 0.5 s, which fails if a render ever blocks the event loop (the heartbeats
    would stop too)."""
    kiln = fault.start(workers=1, worker_env={**harness.slow(STEP), "WORKER_CONCURRENCY": "2"})
    worker = kiln.workers[0]
    client = fault.client()
    task = client.create(2)
    checks.wait_until(
        lambda: fault.states(task.id).get("running") == 2, within=30, what="both rendering"
    )
    started = time.monotonic()
    slowest = 0.0
    probes = 0
    while not checks.all_finished(fault.database_url):
        asked = time.monotonic()
        status = worker.health(timeout=PROBE_TIMEOUT)
        slowest = max(slowest, time.monotonic() - asked)
        probes += 1
        assert status is not None, f"health unanswered within {PROBE_TIMEOUT}s: loop blocked"
        assert time.monotonic() - started < 40, "renders did not finish"
        time.sleep(0.1)
    render = time.monotonic() - started
    summary = fault.check()
    assert summary.states == {"succeeded": 2}
    assert summary.max_delivery == 1
    info = checks.consumer_info(fault.nats.url, bus.worker_consumer("standard"))
    assert info.num_redelivered == 0
    assert render > 3 * harness.ACK_WAIT * 0.8
    harness.record(
        "T3", render_seconds=round(render, 2), ack_wait=harness.ACK_WAIT,
        redelivered=info.num_redelivered, health_probes=probes,
        slowest_probe_ms=round(slowest * 1000, 1),
    )  # fmt: skip
