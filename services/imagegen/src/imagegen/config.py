"""Configuration of the imagegen workers.

Per-queue settings (concurrency, provider, provider options) are one variable per queue,
`IMAGEGEN_<WHAT>_<QUEUE>`, so a Kubernetes Deployment per queue sets only its own. Provider
and polisher options are JSON objects, e.g.
`IMAGEGEN_PROVIDER_OPTIONS_LUMINA={"base_url": "http://sd:7860", "api_style": "a1111"}`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from imagegen.polish import POLISHER_KINDS
from imagegen.providers import PROVIDER_KINDS
from kiln.common.bus import QUEUES, BusSettings
from kiln.common.config import non_negative, one_of, positive, setting
from kiln.common.settings import GrpcClientTlsSettings, NatsSettings, ServerSettings, TokenSettings


def _known_queues(queues: tuple[str, ...]) -> str | None:
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        return f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}"
    if len(set(queues)) != len(queues):
        return "names a queue twice"
    return None if queues else "must name at least one queue"


def _json_object(raw: str) -> str | None:
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        return f"must be a JSON object ({error.msg} at column {error.colno})"
    return None if isinstance(value, dict) else "must be a JSON object"


def _concurrency(queue: str, default: int) -> Any:
    return setting(
        f"IMAGEGEN_CONCURRENCY_{queue.upper()}",
        f"Default jobs at once for a worker whose first queue is `{queue}`.",
        default,
        check=positive,
    )


def _provider(queue: str) -> Any:
    return setting(
        f"IMAGEGEN_PROVIDER_{queue.upper()}",
        f"Provider kind rendering `{queue}` jobs ({', '.join(PROVIDER_KINDS)}).",
        "procedural",
        check=one_of(*PROVIDER_KINDS),
    )


def _provider_options(queue: str) -> Any:
    return setting(
        f"IMAGEGEN_PROVIDER_OPTIONS_{queue.upper()}",
        f"JSON object of options for the `{queue}` provider (may hold an API key).",
        "",
        secret=True,
        check=_json_object,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagegenConfig(
    ServerSettings, NatsSettings, TokenSettings, BusSettings, GrpcClientTlsSettings
):
    """Every setting of an imagegen worker process."""

    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50053, check=non_negative
    )
    # A Generate request is two prompts.
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        "Largest gRPC request message accepted; each service's default fits its API.",
        64 * 1024,
        check=positive,
    )
    auth_target: str = setting(
        "AUTH_TARGET",
        "host:port of the auth service, whose public keys verify tokens.",
        "127.0.0.1:50051",
    )
    worker_queues: tuple[str, ...] = setting(
        "WORKER_QUEUES",
        "Queues this worker serves, highest priority first (`--queues` overrides).",
        ("high_priority", "standard"),
        check=_known_queues,
    )
    worker_concurrency: int = setting(
        "WORKER_CONCURRENCY",
        "Jobs one worker process runs at once (`--concurrency` overrides); 0 takes "
        "IMAGEGEN_CONCURRENCY_<first queue>.",
        0,
        check=non_negative,
    )
    concurrency_high_priority: int = _concurrency("high_priority", 2)
    concurrency_standard: int = _concurrency("standard", 2)
    concurrency_lumina: int = _concurrency("lumina", 1)
    provider_high_priority: str = _provider("high_priority")
    provider_standard: str = _provider("standard")
    provider_lumina: str = _provider("lumina")
    provider_options_high_priority: str = _provider_options("high_priority")
    provider_options_standard: str = _provider_options("standard")
    provider_options_lumina: str = _provider_options("lumina")
    generate_max_per_user: int = setting(
        "IMAGEGEN_GENERATE_MAX_PER_USER",
        "Generate calls one user may have running on one worker; more is RESOURCE_EXHAUSTED.",
        2,
        check=positive,
    )
    polisher: str = setting(
        "IMAGEGEN_POLISHER",
        f"Prompt polisher kind ({', '.join(POLISHER_KINDS)}).",
        "rules",
        check=one_of(*POLISHER_KINDS),
    )
    polisher_options: str = setting(
        "IMAGEGEN_POLISHER_OPTIONS",
        "JSON object of polisher options (may hold an API key).",
        "",
        secret=True,
        check=_json_object,
    )
    polish_cache_size: int = setting(
        "IMAGEGEN_POLISH_CACHE_SIZE",
        "Distinct prompts whose polished form one worker process remembers.",
        4096,
        check=positive,
    )
    retry_backoff_min: float = setting(
        "IMAGEGEN_RETRY_BACKOFF_MIN_SECONDS",
        "Delay before the first retry; doubles with each delivery.",
        1.0,
        check=non_negative,
    )
    retry_backoff_max: float = setting(
        "IMAGEGEN_RETRY_BACKOFF_MAX_SECONDS", "Longest delay between retries.", 60.0, check=positive
    )
    retry_jitter: float = setting(
        "IMAGEGEN_RETRY_JITTER",
        "Random spread of a retry delay, as a fraction of it (0.2 = +-20%).",
        0.2,
        check=non_negative,
    )
    paused_delay: float = setting(
        "IMAGEGEN_PAUSED_DELAY_SECONDS",
        "A job fetched from a paused queue is put back with this delay.",
        5.0,
        check=positive,
    )
    publish_retry_delay: float = setting(
        "IMAGEGEN_PUBLISH_RETRY_DELAY_SECONDS",
        "When a job's result event cannot be published, the job comes back after this.",
        2.0,
        check=positive,
    )
    fetch_wait: float = setting(
        "IMAGEGEN_FETCH_WAIT_SECONDS",
        "How long an idle worker waits on one queue before looking at the next.",
        0.5,
        check=positive,
    )
    check_interval: float = setting(
        "IMAGEGEN_CHECK_INTERVAL_SECONDS",
        "How often a running job looks for its task's cancellation.",
        0.5,
        check=positive,
    )
    progress_interval: float = setting(
        "IMAGEGEN_PROGRESS_INTERVAL_SECONDS",
        "Shortest time between two progress events of one job.",
        0.5,
        check=non_negative,
    )
    fault_crash_marker: str = setting(
        "IMAGEGEN_FAULT_CRASH_MARKER",
        "TESTS ONLY (fault injection): a job whose prompt contains this text kills the "
        "worker process. Empty (the default) disables it.",
        "",
    )

    @property
    def concurrency(self) -> int:
        """Jobs at once: WORKER_CONCURRENCY, else the first queue's default."""
        if self.worker_concurrency > 0:
            return self.worker_concurrency
        return int(getattr(self, f"concurrency_{self.worker_queues[0]}"))

    def provider_kind(self, queue: str) -> str:
        """The provider kind configured for `queue`."""
        return str(getattr(self, f"provider_{queue}"))

    def provider_options(self, queue: str) -> dict[str, object]:
        """The provider options configured for `queue` (checked to be a JSON object)."""
        return _options(str(getattr(self, f"provider_options_{queue}")))

    def polisher_settings(self) -> dict[str, object]:
        """The polisher options."""
        return _options(self.polisher_options)

    def with_overrides(
        self, queues: tuple[str, ...] | None, concurrency: int | None
    ) -> ImagegenConfig:
        """This config with command-line overrides; ValueError names a bad one."""
        checks: list[tuple[str, object, Callable[[Any], str | None]]] = []
        changes: dict[str, object] = {}
        if queues is not None:
            checks.append(("--queues", queues, _known_queues))
            changes["worker_queues"] = queues
        if concurrency is not None:
            checks.append(("--concurrency", concurrency, positive))
            changes["worker_concurrency"] = concurrency
        for flag, value, check in checks:
            problem = check(value)
            if problem:
                raise ValueError(f"{flag}: {problem}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _options(raw: str) -> dict[str, object]:
    if not raw.strip():
        return {}
    value = json.loads(raw)
    return dict(value) if isinstance(value, dict) else {}
