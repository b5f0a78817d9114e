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

from kiln.common import db, migrations, tls
from kiln.common.server import LIVENESS_SERVICE
from kiln.common.settings import DatabaseSettings, ServerSettings

log = structlog.get_logger("kiln.startup")

SCHEMA_POLL_SECONDS = 2.0
"""How often a waiting service checks the schema again."""
_LOG_EVERY_SECONDS = 30.0


@contextlib.asynccontextmanager
async def health_only(
    settings: ServerSettings, credentials: grpc.ServerCredentials | None = None
) -> AsyncIterator[tuple[int, int]]:
    """Serves only the health service while the body runs: liveness SERVING, the server as a
    whole NOT_SERVING, on the gRPC port (over TLS when `credentials` are given) and on the
    plaintext health port when one is set (the probes of a TLS deployment call that one).
    Yields the bound gRPC port and health port (-1 when there is none)."""
    servicer = health.aio.HealthServicer()
    await servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    servers: list[grpc.aio.Server] = []
    try:
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        port = _serve_health(servicer, servers, address, credentials)
        health_port = -1
        if settings.grpc_health_port >= 0:
            health_address = f"{settings.grpc_host}:{settings.grpc_health_port}"
            health_port = _serve_health(servicer, servers, health_address, None)
        for server in servers:
            await server.start()
        yield port, health_port
    finally:
        for server in servers:
            await server.stop(0)


def _serve_health(
    servicer: health.aio.HealthServicer,
    servers: list[grpc.aio.Server],
    address: str,
    credentials: grpc.ServerCredentials | None,
) -> int:
    # No SO_REUSEPORT: another process must not be able to share the port.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    servers.append(server)
    if credentials is None:
        port = int(server.add_insecure_port(address))
    else:
        port = int(server.add_secure_port(address, credentials))
    if port == 0:
        raise OSError(f"could not bind gRPC port {address}")
    return port


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
    The TLS files are checked first, so a bad one is reported before the database is asked.
    """
    credentials = tls.server_credentials(settings)
    engine = db.create_engine(database, application_name=f"{service}-schema-check")
    try:
        try:
            await migrations.ensure_current(engine, script_location, schema, service)
        except migrations.SchemaOutdatedError as exc:
            first_problem = str(exc)
        else:
            return
        async with health_only(settings, credentials):
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
