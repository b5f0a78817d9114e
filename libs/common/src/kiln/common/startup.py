"""Waiting for the database schema before serving, instead of crash-looping.

On a first install or an upgrade the services may start before the migrations have run. They
then wait: the gRPC port answers health checks (liveness SERVING, so nothing restarts the
process; overall NOT_SERVING, so no traffic arrives), a log line says which schema is
missing which revision and how to migrate, and serving starts once the schema is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kiln.common import db, migrations
from kiln.common.server import LIVENESS_SERVICE
from kiln.common.settings import DatabaseSettings, ServerSettings

log = structlog.get_logger("kiln.startup")

SCHEMA_POLL_SECONDS = 2.0
"""How often a waiting service checks the schema again."""
_LOG_EVERY_SECONDS = 30.0


@contextlib.asynccontextmanager
async def health_only(settings: ServerSettings) -> AsyncIterator[int]:
    """Serves only the health service on the gRPC port while the body runs: liveness
    SERVING, the server as a whole NOT_SERVING. Yields the bound port."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise OSError(f"could not bind gRPC port {settings.grpc_host}:{settings.grpc_port}")
    await servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def wait_for_schema(
    settings: ServerSettings,
    database: DatabaseSettings,
    script_location: Path,
    schema: str,
    service: str,
    *,
    poll: float = SCHEMA_POLL_SECONDS,
) -> None:
    """Returns once `schema` is at the code's head revision (or a newer one), serving
    NOT_SERVING health until then; logs `schema_not_current` at once and every 30 s.

    Only an outdated schema is waited for: an unreachable database still raises, as before.
    """
    engine = db.create_engine(database, application_name=f"{service}-schema-check")
    try:
        try:
            await migrations.ensure_current(engine, script_location, schema, service)
        except migrations.SchemaOutdatedError as exc:
            first_problem = str(exc)
        else:
            return
        async with health_only(settings):
            problem: str | None = first_problem
            logged_at = -_LOG_EVERY_SECONDS
            while problem is not None:
                if time.monotonic() - logged_at >= _LOG_EVERY_SECONDS:
                    log.warning("schema_not_current", schema=schema, problem=problem, waiting=True)
                    logged_at = time.monotonic()
                await asyncio.sleep(poll)
                try:
                    await migrations.ensure_current(engine, script_location, schema, service)
                except migrations.SchemaOutdatedError as exc:
                    problem = str(exc)
                else:
                    problem = None
            log.info("schema_current", schema=schema)
    finally:
        await engine.dispose()
