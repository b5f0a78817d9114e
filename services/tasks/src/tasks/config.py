"""Configuration of the tasks service."""

from __future__ import annotations

import dataclasses

from kiln.common.bus import BusSettings
from kiln.common.config import non_negative, positive, setting
from kiln.common.settings import (
    DatabaseSettings,
    GrpcClientTlsSettings,
    NatsSettings,
    ServerSettings,
    TokenSettings,
)
from tasks import spec


@dataclasses.dataclass(frozen=True, kw_only=True)
class TasksConfig(
    ServerSettings,
    DatabaseSettings,
    NatsSettings,
    TokenSettings,
    BusSettings,
    GrpcClientTlsSettings,
):
    """Every setting of the tasks service."""

    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50052, check=non_negative
    )
    # Room for a CreateTask of 10,000 subtasks with long values; other requests are small.
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        "Largest gRPC request message accepted; each service's default fits its API.",
        8 * 1024 * 1024,
        check=positive,
    )
    auth_target: str = setting(
        "AUTH_TARGET",
        "host:port of the auth service, whose public keys verify tokens.",
        "127.0.0.1:50051",
    )
    max_subtasks: int = setting(
        "TASKS_MAX_SUBTASKS", "Subtasks one task may expand to.", 10_000, check=positive
    )
    max_rendered_prompt_chars: int = setting(
        "TASKS_MAX_RENDERED_PROMPT_CHARS",
        "Characters a prompt or negative prompt may reach with its placeholders filled in.",
        16_000,
        check=positive,
    )
    max_active_tasks_per_user: int = setting(
        "TASKS_MAX_ACTIVE_TASKS_PER_USER",
        "Unfinished tasks one user may have; more is RESOURCE_EXHAUSTED.",
        100,
        check=positive,
    )
    max_watchers_per_user: int = setting(
        "TASKS_MAX_WATCHERS_PER_USER",
        "Concurrent WatchTask streams of one user on one replica.",
        50,
        check=positive,
    )
    webhook_allow_private: bool = setting(
        "TASKS_WEBHOOK_ALLOW_PRIVATE",
        "Allow webhooks to loopback and private addresses (local and test setups only).",
        False,
    )
    dispatch_enabled: bool = setting(
        "TASKS_DISPATCH_ENABLED", "Run the outbox dispatcher in this replica.", True
    )
    dispatch_window: int = setting(
        "TASKS_DISPATCH_WINDOW",
        "Jobs of one queue published and not yet finished, at most; the live window is "
        "smaller: the worker slots plus TASKS_DISPATCH_LEAD_SECONDS of their throughput.",
        1000,
        check=positive,
    )
    dispatch_lead: float = setting(
        "TASKS_DISPATCH_LEAD_SECONDS",
        "Seconds of a queue's measured throughput dispatched beyond its worker slots, so "
        "workers never wait for the dispatcher; more makes a new task wait longer.",
        0.5,
        check=positive,
    )
    dispatch_unserved_window: int = setting(
        "TASKS_DISPATCH_UNSERVED_WINDOW",
        "Jobs of a queue with no live worker kept published, so a worker that starts "
        "begins at once.",
        10,
        check=positive,
    )
    priority_aging: float = setting(
        "TASKS_PRIORITY_AGING_SECONDS",
        "A waiting task's priority rises one level per this many seconds since it last had "
        "a job dispatched, so lower priorities are never starved; 0 turns aging off.",
        30.0,
        check=non_negative,
    )
    fault_crash_after_publish: bool = setting(
        "TASKS_FAULT_CRASH_AFTER_PUBLISH",
        "Tests only: exit the process after publishing a batch, before marking it sent.",
        False,
    )
    dispatch_batch: int = setting(
        "TASKS_DISPATCH_BATCH", "Outbox rows published per round.", 5000, check=positive
    )
    dispatch_poll: float = setting(
        "TASKS_DISPATCH_POLL_SECONDS",
        "Longest pause between dispatch rounds when nothing wakes the dispatcher.",
        0.5,
        check=positive,
    )
    dispatch_max_backoff: float = setting(
        "TASKS_DISPATCH_MAX_BACKOFF_SECONDS",
        "Longest pause between dispatch attempts while NATS or PostgreSQL fail.",
        2.0,
        check=positive,
    )
    progress_enabled: bool = setting(
        "TASKS_PROGRESS_ENABLED", "Run the event and advisory consumers in this replica.", True
    )
    progress_batch: int = setting(
        "TASKS_PROGRESS_BATCH", "Events folded in one transaction.", 500, check=positive
    )
    maintenance_enabled: bool = setting(
        "TASKS_MAINTENANCE_ENABLED", "Run the maintenance loop (one replica at a time).", True
    )
    maintenance_interval: float = setting(
        "TASKS_MAINTENANCE_INTERVAL_SECONDS",
        "Pause between maintenance passes.",
        10.0,
        check=positive,
    )
    job_grace: float = setting(
        "TASKS_JOB_GRACE_SECONDS",
        "Extra time a running subtask gets past JOB_TIME_LIMIT_SECONDS before it is re-queued.",
        60.0,
        check=non_negative,
    )
    max_attempts: int = setting(
        "TASKS_MAX_ATTEMPTS",
        "Attempts of one subtask the maintenance loop allows before failing it (TIMEOUT).",
        3,
        check=positive,
    )
    reconcile_after: float = setting(
        "TASKS_RECONCILE_AFTER_SECONDS",
        "A queued or running subtask with no sign of life this long is re-published.",
        900.0,
        check=positive,
    )
    outbox_retention: float = setting(
        "TASKS_OUTBOX_RETENTION_SECONDS",
        "How long sent outbox rows are kept.",
        86400.0,
        check=positive,
    )
    webhook_retention: float = setting(
        "TASKS_WEBHOOK_RETENTION_SECONDS",
        "How long finished webhook deliveries and their attempts are kept.",
        7 * 86400.0,
        check=positive,
    )
    webhook_timeout: float = setting(
        "TASKS_WEBHOOK_TIMEOUT_SECONDS", "Timeout of one webhook POST.", 10.0, check=positive
    )
    webhook_max_attempts: int = setting(
        "TASKS_WEBHOOK_MAX_ATTEMPTS",
        "POSTs of one delivery before it is given up.",
        8,
        check=positive,
    )
    webhook_backoff: float = setting(
        "TASKS_WEBHOOK_BACKOFF_SECONDS",
        "First retry delay of a webhook; doubles per attempt up to 64 times it.",
        2.0,
        check=positive,
    )
    webhook_poll: float = setting(
        "TASKS_WEBHOOK_POLL_SECONDS",
        "Pause between looks for due webhook deliveries.",
        1.0,
        check=positive,
    )
    default_render_seconds: float = setting(
        "TASKS_DEFAULT_RENDER_SECONDS",
        "Render time assumed for ETAs until a queue has measured ones.",
        5.0,
        check=positive,
    )
    metrics_interval: float = setting(
        "TASKS_METRICS_INTERVAL_SECONDS",
        "How often queue depth and outbox lag are sampled for /metrics.",
        5.0,
        check=positive,
    )
    watch_refresh: float = setting(
        "TASKS_WATCH_REFRESH_SECONDS",
        "A watcher re-reads its task at least this often, even without notifications.",
        5.0,
        check=positive,
    )

    def limits(self) -> spec.Limits:
        """The task limits this config sets."""
        return spec.Limits(
            max_subtasks=self.max_subtasks,
            max_rendered_prompt_len=self.max_rendered_prompt_chars,
            allow_private_webhooks=self.webhook_allow_private,
        )
