"""Failure classification and retry timing.

Every way a job can fail becomes a `Failure` (type, message, retryable, retry_after). The
worker retries a retryable failure with `nak(delay=backoff)` until the job's last delivery
(JOB_MAX_DELIVER, 4 = one try plus 3 retries), and ends any other at once with `term`.
"""

from __future__ import annotations

import dataclasses
import random

from imagegen import providers
from kiln.common import backoff, job_errors

# A provider asking for a very long pause is honoured up to this many times the maximum.
_RETRY_AFTER_CAP_FACTOR = 10


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why an attempt failed, in the shape of `jobs_pb2.JobError`."""

    type: str
    message: str
    retryable: bool
    retry_after: float | None = None


def from_render_error(error: providers.RenderError) -> Failure:
    """A provider's or polisher's typed error."""
    retry_after = error.retry_after if isinstance(error, providers.RateLimited) else None
    return Failure(error.type, error.message, error.retryable, retry_after)


def time_limit(limit: float) -> Failure:
    """The job ran past the time limit; a later attempt may be quicker, so it is retried."""
    return Failure(
        job_errors.TIME_LIMIT, f"the job did not finish within {limit:g} s", retryable=True
    )


def expired(age: float, limit: float) -> Failure:
    """The subtask is older than the age limit."""
    return Failure(
        job_errors.EXPIRED,
        f"the job is {age:.0f} s old, past the age limit of {limit:g} s",
        retryable=False,
    )


def storage_unavailable() -> Failure:
    """The object store did not take the image."""
    return Failure(job_errors.STORAGE_UNAVAILABLE, "the image store is unavailable", retryable=True)


def worker_error() -> Failure:
    """An unexpected error in the worker; details are in its log, never in the event."""
    return Failure(job_errors.WORKER_ERROR, "the worker failed unexpectedly", retryable=True)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """The retry delay of a delivery: `kiln.common.backoff` between `minimum` and `maximum`
    seconds with +-`jitter` spread, or longer when the provider asked for a pause."""

    minimum: float
    maximum: float
    jitter: float
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def delay(self, delivery: int, retry_after: float | None = None) -> float:
        """Seconds before delivery `delivery + 1`; at least the provider's `retry_after`."""
        # A minimum of 0 would never grow; a millisecond starts the doubling.
        delays = backoff.Backoff(max(self.minimum, 0.001), self.maximum, self.jitter, self.rng)
        delay = delays.delay(delivery)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.maximum * _RETRY_AFTER_CAP_FACTOR)
        return delay
