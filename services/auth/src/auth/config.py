"""Configuration of the auth service."""

from __future__ import annotations

import dataclasses

from kiln.common.config import non_negative, setting
from kiln.common.settings import DatabaseSettings, ServerSettings, TokenSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthConfig(ServerSettings, DatabaseSettings, TokenSettings):
    """Every setting of the auth service."""

    grpc_port: int = setting("GRPC_PORT", "gRPC port; 0 picks a free one.", 50051,
                             check=non_negative)
