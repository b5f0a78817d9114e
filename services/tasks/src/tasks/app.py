"""Wires the tasks service: database, NATS, token verification, gRPC server."""

from __future__ import annotations

from pathlib import Path

import grpc

from kiln.common import bus, db, interceptors, jetstream, jwks, migrations, server
from kiln.common.tokens import TokenVerifier
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks.config import TasksConfig
from tasks.servicer import SystemServicer, TaskServicer

_SERVICES = tasks_pb2.DESCRIPTOR.services_by_name
TASK_SERVICE = _SERVICES["TaskService"].full_name
SYSTEM_SERVICE = _SERVICES["SystemService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "tasks"


def migrate(config: TasksConfig) -> None:
    """Brings the `tasks` schema up to date."""
    migrations.upgrade(MIGRATIONS, config.database_url, SCHEMA)


async def serve(config: TasksConfig) -> None:
    """Runs the tasks service until SIGTERM."""
    engine = db.create_engine(config, application_name="tasks")
    await migrations.ensure_current(engine, MIGRATIONS, SCHEMA, "tasks")
    nc = await jetstream.connect(config, "tasks")
    await jetstream.provision(nc.jetstream(), bus.tasks_topology(config))
    auth_channel = grpc.aio.insecure_channel(config.auth_target)
    verifier = TokenVerifier(
        jwks.JwksKeySource(jwks.grpc_jwks_fetcher(auth_channel)),
        config.jwt_issuer,
        config.jwt_audience,
        config.jwt_leeway,
    )
    task_servicer, system_servicer = TaskServicer(), SystemServicer()
    host = server.ServiceHost(
        config,
        [
            server.GrpcService(
                TASK_SERVICE,
                lambda s: tasks_pb2_grpc.add_TaskServiceServicer_to_server(task_servicer, s),
            ),
            server.GrpcService(
                SYSTEM_SERVICE,
                lambda s: tasks_pb2_grpc.add_SystemServiceServicer_to_server(system_servicer, s),
            ),
        ],
        interceptors=interceptors.standard_interceptors(verifier),
        dependencies=[
            server.Dependency("postgresql", lambda: db.ping(engine)),
            server.Dependency("nats", lambda: jetstream.ping(nc)),
        ],
    )
    await server.serve_until_stopped(host, [nc.drain, auth_channel.close, engine.dispose])
