"""Prometheus metrics of the tasks service (served with the RPC metrics on METRICS_PORT).

Watchers are read live from the watch hub; queue depth and outbox lag are sampled by a
background loop, since they come from PostgreSQL and JetStream and a scrape must stay cheap.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge

from kiln.common import bus
from tasks import system, watch

WATCHERS = Gauge("kiln_tasks_watchers", "WatchTask streams open on this replica.")
WATCHED_TASKS = Gauge("kiln_tasks_watched_tasks", "Tasks with at least one watcher here.")
# Queue depth and outbox lag describe the whole system, and every replica exports the same
# values: aggregate them with max() (never sum()) across replicas.
QUEUE_DEPTH = Gauge(
    "kiln_tasks_queue_depth",
    "Jobs per queue by where they wait: `outbox` (not yet published), `stream` (published, "
    "not delivered), `in_flight` (delivered, not acknowledged). Global: every replica "
    "exports the same value, so aggregate with max().",
    ["queue", "stage"],
)
OUTBOX_LAG = Gauge(
    "kiln_tasks_outbox_lag_seconds",
    "Age of the oldest job of a queue still waiting for dispatch or delivery. Global: "
    "aggregate with max().",
    ["queue"],
)
MAX_DELIVERIES = Counter(
    "kiln_tasks_jobs_max_deliveries_total",
    "Jobs that reached the consumer's max deliveries (their subtask failed MAX_DELIVERIES), "
    "as handled by this replica.",
)
WEBHOOK_ATTEMPTS = Counter(
    "kiln_tasks_webhook_attempts_total",
    "Webhook POSTs by outcome: delivered (2xx), pending (will retry), failed (given up).",
    ["outcome"],
)
for _outcome in ("delivered", "pending", "failed"):
    WEBHOOK_ATTEMPTS.labels(outcome=_outcome)  # exported as 0 before the first webhook

EVENTS_REJECTED = Counter(
    "kiln_tasks_events_rejected_total",
    "Messages terminated because they can never fold, by reason: `undecodable` (not a "
    "SubtaskEvent), `invalid` (fails the event checks), `unfoldable` (the fold refused "
    "it), `advisory` (a max-deliveries advisory whose job names no subtask that can fail).",
    ["reason"],
)
for _reason in ("undecodable", "invalid", "unfoldable", "advisory"):
    EVENTS_REJECTED.labels(reason=_reason)  # exported as 0 before the first rejection


def track_watchers(hub: watch.Hub) -> None:
    """Makes the watcher gauges read the hub at scrape time."""
    WATCHERS.set_function(lambda: hub.watchers)
    WATCHED_TASKS.set_function(lambda: hub.watched_tasks)


async def sample_queues(queues: system.System, interval: float) -> None:
    """Refreshes the queue gauges every `interval` seconds, forever."""
    while True:
        for queue in bus.QUEUES:
            stats = await queues.queue(queue)
            QUEUE_DEPTH.labels(queue=queue, stage="outbox").set(stats.waiting_dispatch)
            QUEUE_DEPTH.labels(queue=queue, stage="stream").set(stats.pending)
            QUEUE_DEPTH.labels(queue=queue, stage="in_flight").set(stats.in_flight)
            OUTBOX_LAG.labels(queue=queue).set(stats.oldest_age)
        await asyncio.sleep(interval)
