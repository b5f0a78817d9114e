"""The names and shapes on the NATS bus, shared by the tasks service and the workers.

One module names every stream, subject, consumer, bucket and store, so a subject, a
consumer and a KEDA trigger that refer to the same queue use the same constant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from nats.js import api

from kiln.common.config import non_negative, positive, setting
from kiln.common.jetstream import Topology

QUEUES = ("high_priority", "standard", "lumina")
"""Every worker queue, in the order workers serving several of them take jobs."""

JOBS_STREAM = "JOBS"
EVENTS_STREAM = "EVENTS"
ADVISORIES_STREAM = "JOB_ADVISORIES"
PROGRESS_CONSUMER = "tasks-progress"
ADVISORIES_CONSUMER = "tasks-advisories"
WORKERS_BUCKET = "workers"
QUEUE_STATE_BUCKET = "queue_state"
CANCELLATIONS_BUCKET = "cancellations"
IMAGES_STORE = "images"
POLISH_CACHE_BUCKET = "polish_cache"
"""Polished prompts shared by the workers: key = hash of polisher config and prompt."""
POLISH_CACHE_TTL_SECONDS = 7 * 86400.0
RENDER_INDEX_BUCKET = "render_index"
"""Stored images by render key (a hash of the render inputs), for tasks that reuse results:
key = scope (the owner's, or `shared`) and render key, value = the image's subtask and
object names. Kept as long as the images are."""
MSG_ID_HEADER = "Nats-Msg-Id"
ACCOUNTS_BUCKET = "auth_accounts"
"""Each user's role, active flag and tokens_not_before, key = user id: written only by the
auth service, watched by every service that checks tokens (kiln.common.account_states)."""


def jobs_subject(queue: str) -> str:
    """Where jobs of `queue` are published."""
    return f"jobs.{queue}"


def worker_consumer(queue: str) -> str:
    """The durable pull consumer every worker of `queue` shares (KEDA scales on its lag)."""
    return f"workers-{queue}"


def events_subject(task_id: str) -> str:
    """Where workers publish the events of one task's subtasks."""
    return f"events.subtasks.{task_id}"


EVENTS_WILDCARD = "events.subtasks.>"
MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.*"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplicationSettings:
    """How many copies JetStream keeps of what a service creates on the bus (the tasks
    service's streams, buckets and store; auth's account-states bucket)."""

    jetstream_replicas: int = setting(
        "JETSTREAM_REPLICAS",
        "Copies JetStream keeps of every stream, key-value bucket and the image store "
        "(1, or 3/5 on a cluster of that many servers); the tasks service updates existing ones "
        "at start.",
        1,
        check=lambda n: None if 1 <= n <= 5 else "must be between 1 and 5",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class BusSettings(ReplicationSettings):
    """Delivery limits of the job bus; the tasks service and workers must agree on them."""

    retired_settings: ClassVar[Mapping[str, str]] = {
        "TASKS_JOB_TIME_LIMIT_SECONDS": "JOB_TIME_LIMIT_SECONDS",
        "IMAGEGEN_TIME_LIMIT_SECONDS": "JOB_TIME_LIMIT_SECONDS",
        "TASKS_JOB_AGE_LIMIT_SECONDS": "JOB_MAX_AGE_SECONDS",
        "IMAGEGEN_AGE_LIMIT_SECONDS": "JOB_MAX_AGE_SECONDS",
    }
    """Per-service variables these shared settings replaced: one still set stops start-up,
    so a limit raised on one side only cannot silently differ from the other."""

    job_ack_wait: float = setting(
        "JOB_ACK_WAIT_SECONDS",
        "A job not acknowledged (or heartbeated) within this is redelivered.",
        30.0,
        check=positive,
    )
    job_max_deliver: int = setting(
        "JOB_MAX_DELIVER",
        "Deliveries of one job before it is failed (1 + retries).",
        4,
        check=positive,
    )
    job_time_limit: float = setting(
        "JOB_TIME_LIMIT_SECONDS",
        "Longest one job may polish, render and store; past it the worker fails the attempt "
        "with TIME_LIMIT (retryable), and the tasks service re-queues a subtask running this "
        "long plus TASKS_JOB_GRACE_SECONDS.",
        300.0,
        check=positive,
    )
    job_max_age: float = setting(
        "JOB_MAX_AGE_SECONDS",
        "A subtask older than this fails with EXPIRED, not retried: the tasks service expires "
        "waiting ones, a worker refuses to start one.",
        86400.0,
        check=positive,
    )
    dedupe_window: float = setting(
        "JOB_DEDUPE_WINDOW_SECONDS",
        "How long JetStream drops a re-published job id.",
        120.0,
        check=positive,
    )
    events_max_age: float = setting(
        "EVENTS_MAX_AGE_SECONDS",
        "How long subtask events stay on the stream.",
        86400.0,
        check=positive,
    )
    worker_heartbeat_ttl: float = setting(
        "WORKER_HEARTBEAT_TTL_SECONDS",
        "A worker missing heartbeats this long is gone.",
        15.0,
        check=positive,
    )
    cancellation_ttl: float = setting(
        "CANCELLATION_TTL_SECONDS",
        "How long a task's cancellation record is kept.",
        172800.0,
        check=positive,
    )
    images_max_age: float = setting(
        "IMAGES_MAX_AGE_SECONDS",
        "How long a stored image is kept; older ones are removed and GetImage answers "
        "FAILED_PRECONDITION (IMAGE_EXPIRED). 0 keeps images forever.",
        30 * 86400.0,
        check=non_negative,
    )
    images_max_bytes: int = setting(
        "IMAGES_MAX_BYTES",
        "Most bytes the image store holds; past it the oldest images are removed. 0 sets "
        "no size limit.",
        0,
        check=non_negative,
    )


def streams(settings: BusSettings) -> list[api.StreamConfig]:
    """The streams of the bus."""
    return [
        api.StreamConfig(
            name=JOBS_STREAM,
            subjects=[jobs_subject(q) for q in QUEUES],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            duplicate_window=settings.dedupe_window,
            num_replicas=settings.jetstream_replicas,
        ),
        api.StreamConfig(
            name=EVENTS_STREAM,
            subjects=[EVENTS_WILDCARD],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=settings.events_max_age,
            duplicate_window=settings.dedupe_window,
            num_replicas=settings.jetstream_replicas,
        ),
        # Advisories are plain NATS messages; capturing them in a stream means a tasks
        # service that is down when a job dies still hears about it.
        api.StreamConfig(
            name=ADVISORIES_STREAM,
            subjects=[MAX_DELIVERIES_ADVISORY],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=settings.events_max_age,
            num_replicas=settings.jetstream_replicas,
        ),
    ]


def worker_consumer_config(queue: str, settings: BusSettings) -> api.ConsumerConfig:
    """The shared pull consumer of `queue`."""
    return api.ConsumerConfig(
        durable_name=worker_consumer(queue),
        filter_subject=jobs_subject(queue),
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.job_ack_wait,
        max_deliver=settings.job_max_deliver,
        max_ack_pending=10_000,
        deliver_policy=api.DeliverPolicy.ALL,
    )


def images_store_config(settings: BusSettings) -> api.ObjectStoreConfig:
    """The image store: replicated like everything else, with the images' retention."""
    return api.ObjectStoreConfig(
        bucket=IMAGES_STORE,
        storage=api.StorageType.FILE,
        replicas=settings.jetstream_replicas,
        ttl=settings.images_max_age or None,
        max_bytes=settings.images_max_bytes or -1,
    )


def worker_topology(queues: tuple[str, ...], settings: BusSettings) -> Topology:
    """What a worker needs to exist (the tasks service creates it; a worker waits for it):
    the streams, its queues' consumers, the buckets and the store."""
    return Topology(
        streams=streams(settings),
        consumers=[(JOBS_STREAM, worker_consumer_config(q, settings)) for q in queues],
        key_value=_buckets(settings),
        object_stores=[images_store_config(settings)],
    )


def tasks_topology(settings: BusSettings) -> Topology:
    """Everything on the bus, which the tasks service alone creates and keeps up to date:
    the streams, every queue's worker consumer, the event consumers, buckets and store."""
    return Topology(
        streams=streams(settings),
        consumers=[
            *((JOBS_STREAM, worker_consumer_config(q, settings)) for q in QUEUES),
            (
                EVENTS_STREAM,
                api.ConsumerConfig(
                    durable_name=PROGRESS_CONSUMER,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=30.0,
                    max_deliver=-1,
                    max_ack_pending=20_000,
                    deliver_policy=api.DeliverPolicy.ALL,
                ),
            ),
            (
                ADVISORIES_STREAM,
                api.ConsumerConfig(
                    durable_name=ADVISORIES_CONSUMER,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=30.0,
                    max_deliver=-1,
                    deliver_policy=api.DeliverPolicy.ALL,
                ),
            ),
        ],
        key_value=_buckets(settings),
        object_stores=[images_store_config(settings)],
    )


def auth_topology(settings: ReplicationSettings) -> Topology:
    """What the auth service needs: the account-states bucket (latest value per user)."""
    return Topology(
        key_value=[
            api.KeyValueConfig(
                bucket=ACCOUNTS_BUCKET,
                history=1,
                storage=api.StorageType.FILE,
                replicas=settings.jetstream_replicas,
            )
        ]
    )


def _buckets(settings: BusSettings) -> list[api.KeyValueConfig]:
    return [
        api.KeyValueConfig(
            bucket=WORKERS_BUCKET,
            ttl=settings.worker_heartbeat_ttl,
            history=1,
            storage=api.StorageType.FILE,
            replicas=settings.jetstream_replicas,
        ),
        api.KeyValueConfig(
            bucket=QUEUE_STATE_BUCKET,
            history=5,
            storage=api.StorageType.FILE,
            replicas=settings.jetstream_replicas,
        ),
        api.KeyValueConfig(
            bucket=CANCELLATIONS_BUCKET,
            ttl=settings.cancellation_ttl,
            history=1,
            storage=api.StorageType.FILE,
            replicas=settings.jetstream_replicas,
        ),
        api.KeyValueConfig(
            bucket=POLISH_CACHE_BUCKET,
            ttl=POLISH_CACHE_TTL_SECONDS,
            history=1,
            storage=api.StorageType.FILE,
            replicas=settings.jetstream_replicas,
        ),
        # An entry outliving its image is harmless (the worker checks the image exists and
        # renders when it does not); the same age limit only keeps the index small.
        api.KeyValueConfig(
            bucket=RENDER_INDEX_BUCKET,
            ttl=settings.images_max_age or None,
            history=1,
            storage=api.StorageType.FILE,
            replicas=settings.jetstream_replicas,
        ),
    ]


TASK_CHANGES_PREFIX = "tasks.changes"
"""Core NATS (not JetStream) subjects on which a tasks replica announces that it committed a
change to a task, so every replica's WatchTask streams re-read it."""


def task_changes_subject(task_id: str) -> str:
    """Where a change to one task is announced (payload: the new version, as text)."""
    return f"{TASK_CHANGES_PREFIX}.{task_id}"
