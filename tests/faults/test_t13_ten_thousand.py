"""T13: one task of 10,000 subtasks through two workers, watching delivery and memory."""

from __future__ import annotations

import json
import time

import pytest
from faults import checks, harness
from faults.harness import Fault

TOTAL = 10_000
RENDER_SECONDS = 0.01
ONCE = (
    "SELECT count(*) FROM tasks.subtasks WHERE last_delivery = 1 AND attempt = 1 AND generation = 0"
)


@pytest.mark.long
@pytest.mark.timeout(900)
def test_ten_thousand_subtasks_complete_with_bounded_worker_memory(fault: Fault) -> None:
    """10,000 subtasks on two workers with a 10 ms renderer (the instant one with a delay:
    the pipeline, not the painting, is under test) all succeed with one image each; at
    least 99.9 % were delivered exactly once; each worker's peak memory in the second half
    of the run is at most 1.5 x its peak in the first quarter (no growth with the number of
    jobs done)."""
    renderer = {"IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps({"delay": RENDER_SECONDS})}
    kiln = fault.start(workers=2, worker_env={"WORKER_CONCURRENCY": "8", **renderer})
    client = fault.client()
    started = time.monotonic()
    client.create(TOTAL, name="ten-thousand")
    samples: list[tuple[int, list[int]]] = []
    while not checks.all_finished(fault.database_url):
        done = fault.states().get("succeeded", 0)
        samples.append((done, [harness.rss_bytes(w) for w in kiln.workers]))
        assert time.monotonic() - started < 800, f"only {done} done"
        time.sleep(1.0)
    took = time.monotonic() - started
    summary = fault.check()
    assert summary.states == {"succeeded": TOTAL}
    assert summary.images == TOTAL
    once = int(checks.scalar(fault.database_url, ONCE))
    assert once >= 0.999 * TOTAL, once
    early = [max(r[i] for d, r in samples if d <= TOTAL // 4) for i in range(2)]
    late = [max(r[i] for d, r in samples if d >= TOTAL // 2) for i in range(2)]
    for first, second in zip(early, late, strict=True):
        assert second <= 1.5 * first, (early, late)
    harness.record(
        "T13", subtasks=TOTAL, render_ms=RENDER_SECONDS * 1000, seconds=round(took, 1),
        per_second=round(TOTAL / took, 1),
        delivered_once=once, worker_rss_mib_first_quarter=[round(b / 2**20) for b in early],
        worker_rss_mib_second_half=[round(b / 2**20) for b in late],
    )  # fmt: skip
