"""Prometheus metrics of the workers (served with the RPC metrics on METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter(
    "kiln_imagegen_jobs_total",
    "Job deliveries handled, by queue and outcome (succeeded, retry, failed, cancelled, "
    "expired, malformed, paused, handed_back, lease_lost).",
    ["queue", "outcome"],
)
RENDER_SECONDS = Histogram(
    "kiln_imagegen_render_seconds",
    "Render time of succeeded jobs that rendered (not those served by reuse), by queue.",
    ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("kiln_imagegen_jobs_in_flight", "Jobs running in this process.")
SLOTS = Gauge(
    "kiln_imagegen_job_slots", "Jobs this process runs at once at most (its concurrency)."
)
_WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
QUEUE_WAIT_SECONDS = Histogram(
    "kiln_imagegen_queue_wait_seconds",
    "Time from submission (the subtask's creation) to a worker starting the job, by queue; "
    "a retried job counts again, with its whole age.",
    ["queue"],
    buckets=_WAIT_BUCKETS,
)
JOB_LATENCY_SECONDS = Histogram(
    "kiln_imagegen_job_latency_seconds",
    "Time from submission (the subtask's creation) to its image being stored, by queue.",
    ["queue"],
    buckets=_WAIT_BUCKETS,
)
RESULTS_REUSED = Counter(
    "kiln_imagegen_results_reused_total",
    "Jobs that succeeded with a copy of an already stored image of the same render inputs "
    "(the task's reuse_results) instead of a render, by queue.",
    ["queue"],
)
REUSE_LOOKUPS = Counter(
    "kiln_imagegen_reuse_lookups_total",
    "Render-index lookups of jobs with reuse_results, by queue and outcome (hit; miss: no "
    "image of these inputs that the owner may reuse; gone: one was indexed but is no longer "
    "stored, so the job rendered).",
    ["queue", "outcome"],
)


def job_done(queue: str, outcome: str) -> None:
    """Counts one handled delivery."""
    JOBS.labels(queue=queue, outcome=outcome).inc()
