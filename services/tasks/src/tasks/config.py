"""Configuration of the tasks service."""

from __future__ import annotations

import dataclasses

from kiln.common.bus import BusSettings
from kiln.common.config import non_negative, setting
from kiln.common.settings import DatabaseSettings, NatsSettings, ServerSettings, TokenSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class TasksConfig(ServerSettings, DatabaseSettings, NatsSettings, TokenSettings, BusSettings):
    """Every setting of the tasks service."""

    grpc_port: int = setting(
        "GRPC_PORT", "gRPC port; 0 picks a free one.", 50052, check=non_negative
    )
    auth_target: str = setting(
        "AUTH_TARGET",
        "host:port of the auth service, whose public keys verify tokens.",
        "127.0.0.1:50051",
    )
