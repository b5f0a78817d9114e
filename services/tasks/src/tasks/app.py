"""Wires the tasks service: database, NATS, token verification, gRPC server, background loops.

`build()` assembles everything without serving, so tests run the real server in-process on
port 0 with a test token verifier; `serve()`, the process entry point, runs it with
`kiln.common.server.serve_app` like every service.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from kiln.common import (
    bus,
    db,
    interceptors,
    jetstream,
    migrations,
    server,
    startup,
    textlimits,
    verifiers,
)
from kiln.common.account_states import AccountStates
from kiln.common.tokens import TokenVerifier
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks import (
    dispatch,
    estimates,
    fold,
    maintenance,
    metrics,
    progress,
    service,
    system,
    validation,
    watch,
    webhooks,
)
from tasks.config import TasksConfig
from tasks.servicer import SystemServicer, TaskServicer

log = structlog.get_logger("tasks.app")

_SERVICES = tasks_pb2.DESCRIPTOR.services_by_name
TASK_SERVICE = _SERVICES["TaskService"].full_name
SYSTEM_SERVICE = _SERVICES["SystemService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "tasks"
_CONSUMER_STOP_SECONDS = 2.0
_CONSUMER_LOOPS = frozenset({"tasks-progress", "tasks-advisories"})
_LOOP_STOP_SECONDS = 5.0
_ACCOUNTS_REPLAY_SECONDS = 10.0


def migrate(config: TasksConfig) -> None:
    """Brings the `tasks` schema up to date."""
    migrations.upgrade(MIGRATIONS, config.database_url, SCHEMA)


@dataclasses.dataclass
class TasksApp(server.ServiceApp):
    """A built tasks service: the gRPC host plus its resources and background loops."""

    config: TasksConfig
    host: server.ServiceHost
    engine: AsyncEngine
    nc: Client
    tasks: service.Tasks
    hub: watch.Hub
    dispatcher: dispatch.Dispatcher
    progress_consumer: progress.ProgressConsumer
    advisory_consumer: progress.AdvisoryConsumer
    maintainer: maintenance.Maintenance
    sender: webhooks.Sender
    system: system.System
    accounts: AccountStates
    closers: list[Callable[[], Awaitable[object]]]
    loops: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    def start_loops(self) -> None:
        """Starts the background loops the config enables."""
        config = self.config
        wanted: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        if config.dispatch_enabled:
            wanted.append(("dispatcher", self.dispatcher.run))
        if config.progress_enabled:
            wanted += [
                ("progress", self.progress_consumer.run),
                ("advisories", self.advisory_consumer.run),
            ]
        if config.maintenance_enabled:
            wanted.append(("maintenance", self.maintainer.run))
        wanted.append(("webhooks", self.sender.run))
        wanted.append(("account-states", lambda: self.accounts.run(self.nc)))
        wanted.append(
            ("metrics", lambda: metrics.sample_queues(self.system, config.metrics_interval))
        )
        for name, run in wanted:
            self.loops.append(asyncio.create_task(_supervise(name, run), name=f"tasks-{name}"))

    async def stop_loops(self) -> None:
        """Stops the background loops: the consumers finish their current fetch (cancelling
        a nats-py fetch can leave the cancelling task waiting forever), then everything is
        cancelled; a loop that does not end within a few seconds is logged and left."""
        self.progress_consumer.stop()
        self.advisory_consumer.stop()
        consumers = [t for t in self.loops if t.get_name() in _CONSUMER_LOOPS]
        if consumers:
            await asyncio.wait(consumers, timeout=_CONSUMER_STOP_SECONDS)
        for loop in self.loops:
            loop.cancel()
        if self.loops:
            _done, pending = await asyncio.wait(self.loops, timeout=_LOOP_STOP_SECONDS)
            if pending:
                log.warning("loops_not_stopped", loops=sorted(t.get_name() for t in pending))
        self.loops.clear()

    async def start(self) -> int:
        """Starts loops and the server; returns the port."""
        self.start_loops()
        await self.accounts.wait_ready(_ACCOUNTS_REPLAY_SECONDS)
        return await self.host.start()

    async def close(self) -> None:
        """Stops the loops and closes every resource (the server has stopped)."""
        await self.stop_loops()
        for close in self.closers:
            try:
                await close()
            except Exception:
                log.warning("close_failed", exc_info=True)


async def _supervise(name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Runs a background loop for good: a crash, or a CancelledError that did not come from
    cancelling this task (a library cancelling an inner future), restarts it after a pause."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            log.exception("loop_cancelled_unexpectedly", loop=name)
        except Exception:
            log.exception("loop_crashed", loop=name)
        else:
            return  # the loop was asked to stop
        await asyncio.sleep(1.0)


async def build(config: TasksConfig, verifier: TokenVerifier | None = None) -> TasksApp:
    """Connects to PostgreSQL and NATS, provisions the bus and assembles the service.

    Without `verifier`, tokens are checked with the auth service's published keys."""
    engine = db.create_engine(config, application_name="tasks")
    await migrations.ensure_current(engine, MIGRATIONS, SCHEMA, "tasks")
    nc = await jetstream.connect(config, "tasks")
    js = nc.jetstream()
    await jetstream.provision(js, bus.tasks_topology(config))
    closers: list[Callable[[], Awaitable[object]]] = []
    if verifier is None:
        verifier, auth_channel = verifiers.auth_service_verifier(config.auth_target, config, config)
        closers.append(auth_channel.close)

    hub = watch.Hub(nc, config.max_watchers_per_user)
    sender = webhooks.Sender(
        engine,
        allow_private=config.webhook_allow_private,
        timeout=config.webhook_timeout,
        max_attempts=config.webhook_max_attempts,
        backoff=config.webhook_backoff,
        poll=config.webhook_poll,
    )
    estimator = estimates.Estimator(engine, nc, config.default_render_seconds)

    async def announce(outcome: fold.Outcome) -> None:
        if outcome.ended:
            dispatcher.room_freed()
        if outcome.webhooks:
            sender.wake()
        for task_id, version in outcome.versions.items():
            await hub.announce(task_id, version)

    dispatcher = dispatch.Dispatcher(
        engine,
        js,
        capacity=estimator,
        rule=dispatch.WindowRule(
            lead=config.dispatch_lead,
            unserved=config.dispatch_unserved_window,
            maximum=config.dispatch_window,
            aging=config.priority_aging,
        ),
        batch=config.dispatch_batch,
        poll=config.dispatch_poll,
        max_backoff=config.dispatch_max_backoff,
        max_payload=lambda: nc.max_payload,
        on_outcome=announce,
        crash_after_publish=config.fault_crash_after_publish,
    )

    runtime = service.Runtime(
        engine=engine,
        nc=nc,
        js=js,
        hub=hub,
        estimator=estimator,
        limits=config.limits(),
        priority_aging=config.priority_aging,
        max_active_tasks=config.max_active_tasks_per_user,
        wake_dispatcher=dispatcher.wake,
        wake_webhooks=sender.wake,
    )
    tasks = service.Tasks(runtime)
    watches = service.Watches(tasks, config.watch_refresh)
    task_servicer = TaskServicer(tasks, watches, js)
    system_use_cases = system.System(engine, js)
    system_servicer = SystemServicer(system_use_cases)
    metrics.track_watchers(hub)
    # Tokens are checked against the account states auth publishes; until the first replay
    # has arrived the service is NOT_SERVING and refuses authenticated calls (UNAVAILABLE).
    accounts = AccountStates()
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
        interceptors=[
            *interceptors.standard_interceptors(verifier, accounts=accounts),
            textlimits.TextLimitInterceptor(validation.TEXT_LIMITS),
        ],
        dependencies=[
            server.Dependency("postgresql", lambda: db.ping(engine)),
            server.Dependency("nats", lambda: jetstream.ping(nc)),
            server.Dependency("account_states", accounts.ready),
        ],
    )
    limits = maintenance.Limits(
        time_limit=config.job_time_limit,
        grace=config.job_grace,
        age_limit=config.job_max_age,
        max_attempts=config.max_attempts,
        reconcile_after=config.reconcile_after,
        outbox_retention=config.outbox_retention,
        webhook_retention=config.webhook_retention,
    )
    closers += [sender.close, nc.drain, engine.dispose]
    return TasksApp(
        config=config,
        host=host,
        engine=engine,
        nc=nc,
        tasks=tasks,
        hub=hub,
        dispatcher=dispatcher,
        progress_consumer=progress.ProgressConsumer(js, engine, config.progress_batch, announce),
        advisory_consumer=progress.AdvisoryConsumer(js, engine, announce, config.job_max_deliver),
        maintainer=maintenance.Maintenance(
            engine,
            limits,
            interval=config.maintenance_interval,
            announce=announce,
            wake_dispatcher=dispatcher.wake,
            record_cancellation=tasks.record_cancellation,
        ),
        sender=sender,
        system=system_use_cases,
        accounts=accounts,
        closers=closers,
    )


async def serve(config: TasksConfig) -> None:
    """Runs the tasks service until SIGTERM (after waiting for the schema, if it is old)."""
    await startup.wait_for_schema(config, config, MIGRATIONS, SCHEMA, "tasks")
    await server.serve_app(await build(config))
