"""Configuration of the imagegen workers."""

from __future__ import annotations

import dataclasses

from kiln.common.bus import QUEUES, BusSettings
from kiln.common.config import non_negative, positive, setting
from kiln.common.settings import NatsSettings, ServerSettings, TokenSettings


def _known_queues(queues: tuple[str, ...]) -> str | None:
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        return f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}"
    return None if queues else "must name at least one queue"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagegenConfig(ServerSettings, NatsSettings, TokenSettings, BusSettings):
    """Every setting of an imagegen worker process."""

    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50053, check=non_negative
    )
    auth_target: str = setting(
        "AUTH_TARGET",
        "host:port of the auth service, whose public keys verify tokens.",
        "127.0.0.1:50051",
    )
    worker_queues: tuple[str, ...] = setting(
        "WORKER_QUEUES",
        "Queues this worker serves, highest priority first.",
        ("high_priority", "standard"),
        check=_known_queues,
    )
    worker_concurrency: int = setting(
        "WORKER_CONCURRENCY", "Jobs one worker process runs at once.", 2, check=positive
    )
