"""gRPC server bootstrap: one shape for every Kiln process.

`ServiceHost` builds a grpc.aio server with the Kiln interceptors, message-size limits and a
raised pending-request limit, registers health and reflection, ties health to the process's
real dependencies, and shuts down gracefully: SIGTERM -> NOT_SERVING -> drain -> exit.
`ServiceApp` is what each service's `build()` returns and `serve_app` runs, so all three
services start, handle signals and stop the same way.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kiln.common import metrics, tls
from kiln.common.reflection import enable_commented_reflection
from kiln.common.settings import ServerSettings

log = structlog.get_logger("kiln.server")

Probe = Callable[[], Awaitable[bool]]
LIVENESS_SERVICE = "liveness"
"""Health service name for liveness probes: SERVING while the process is alive."""


@dataclasses.dataclass(frozen=True)
class GrpcService:
    """A servicer to register: its full proto name and the generated `add_..._to_server`."""

    name: str
    register: Callable[[grpc.aio.Server], None]


@dataclasses.dataclass(frozen=True)
class Dependency:
    """Something the process needs to serve; `probe` answers whether it is reachable now."""

    name: str
    probe: Probe


def server_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    """Channel arguments for a Kiln server."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        # grpc core sheds load (CANCELLED) past ~1000 queued calls by default.
        ("grpc.server.max_pending_requests", settings.max_pending_requests),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_pending_requests * 2),
        # Two servers must never share a port silently.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ]


def bind_port(
    server: grpc.aio.Server,
    settings: ServerSettings,
    credentials: grpc.ServerCredentials | None = None,
) -> int:
    """Binds GRPC_PORT (or, with GRPC_PORT_FALLBACK and the port taken, a free one), over TLS
    when `credentials` are given, and returns the port bound. Binding is the only check that
    cannot race: a port seen free a moment earlier may be someone else's by now."""

    def bind(address: str) -> int:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))

    address = f"{settings.grpc_host}:{settings.grpc_port}"
    try:
        port = bind(address)
    except RuntimeError:  # grpc's "Failed to bind to address"
        port = 0
    if port:
        return port
    if not settings.grpc_port_fallback or settings.grpc_port == 0:
        raise OSError(f"could not bind gRPC port {address}: it is in use")
    log.warning("grpc_port_taken", wanted=settings.grpc_port)
    return bind(f"{settings.grpc_host}:0")


def write_port_file(path: Path, port: int) -> None:
    """Writes `port` to `path` atomically: a reader sees the whole number or no file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(f"{port}\n")
    partial.replace(path)


class HealthMonitor:
    """Probes dependencies on an interval and publishes SERVING / NOT_SERVING."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        service_names: Sequence[str],
        dependencies: Sequence[Dependency],
        interval: float,
    ) -> None:
        self._servicer = servicer
        self._names = ["", *service_names]
        self._dependencies = list(dependencies)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._serving: bool | None = None
        self.failing: list[str] = []

    async def check_once(self) -> bool:
        """Probes every dependency once and publishes the result; True when all are up."""
        results = await asyncio.gather(*(self._probe(d) for d in self._dependencies))
        self.failing = [d.name for d, ok in zip(self._dependencies, results, strict=True) if not ok]
        serving = not self.failing
        if serving != self._serving:
            log.info("health_changed", serving=serving, failing=self.failing)
            self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            await self._servicer.set(name, status)
        return serving

    async def _probe(self, dependency: Dependency) -> bool:
        try:
            return await asyncio.wait_for(dependency.probe(), timeout=self._interval * 2)
        except Exception:
            return False

    def start(self) -> None:
        """Starts probing in the background."""
        self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def _run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """Stops probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ServiceHost:
    """A process's gRPC server with health, reflection, interceptors and graceful stop."""

    def __init__(
        self,
        settings: ServerSettings,
        services: Sequence[GrpcService],
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        dependencies: Sequence[Dependency] = (),
    ) -> None:
        self.settings = settings
        self.server = grpc.aio.server(
            interceptors=list(interceptors), options=server_options(settings)
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for service in services:
            service.register(self.server)
        names = [s.name for s in services]
        enable_commented_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.monitor = HealthMonitor(
            self.health, names, dependencies, settings.health_probe_interval
        )
        self._credentials = tls.server_credentials(settings)
        self.health_server: grpc.aio.Server | None = None
        self.health_port = -1
        self.port = 0
        self.metrics_port = -1
        self._stopping = asyncio.Event()

    async def start(self) -> int:
        """Binds, starts serving and probing; returns the bound port (useful with port 0)."""
        self.port = bind_port(self.server, self.settings, self._credentials)
        # Liveness answers SERVING while the process runs, whatever its dependencies do:
        # restarting every replica during a database outage would only add to it.
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self.monitor.check_once()
        self.metrics_port = metrics.serve(self.settings.grpc_host, self.settings.metrics_port)
        await self.server.start()
        await self._start_health_server()
        self.monitor.start()
        if self.settings.grpc_port_file:
            write_port_file(Path(self.settings.grpc_port_file), self.port)
        log.info("server_started", port=self.port, tls=self._credentials is not None)
        return self.port

    async def _start_health_server(self) -> None:
        """With GRPC_HEALTH_PORT set, serves the same health statuses in plaintext on their
        own port: Kubernetes `grpc:` probes cannot speak TLS, and health reveals nothing.
        Reflection there lists Health alone, so grpcurl works without proto files."""
        if self.settings.grpc_health_port < 0:
            return
        self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        reflection.enable_server_reflection(
            [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.health_server,
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_health_port}"
        self.health_port = self.health_server.add_insecure_port(address)
        if self.health_port == 0:
            raise OSError(f"could not bind gRPC health port {address}")
        await self.health_server.start()

    def request_stop(self) -> None:
        """Asks `wait()` to begin the graceful shutdown (signal handlers call this)."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start the graceful shutdown."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    async def stop_requested(self) -> None:
        """Returns once a stop is requested."""
        await self._stopping.wait()

    async def wait(self) -> None:
        """Serves until a stop is requested, then shuts down gracefully."""
        await self.stop_requested()
        await self.shutdown()

    async def shutdown(self) -> None:
        """NOT_SERVING for `shutdown_delay`, then refuse new calls and drain in-flight ones
        for up to `grace_period` seconds."""
        log.info("server_stopping", grace_period=self.settings.grace_period)
        await self.monitor.stop()
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(self.settings.shutdown_delay)
        await self.server.stop(self.settings.grace_period)
        if self.health_server is not None:
            await self.health_server.stop(0)
        log.info("server_stopped")


class ServiceApp(abc.ABC):
    """The one start-up shape of a Kiln service: `build(settings)` in the service's app.py
    assembles one of these, and `serve_app` runs it.

    `start()` starts the service's own background work, then serves; `drain()` finishes that
    work on SIGTERM while the server drains its calls; `close()` releases what `build`
    acquired. `stop()` ends everything at once (tests run the server in-process)."""

    host: ServiceHost

    @abc.abstractmethod
    async def start(self) -> int:
        """Starts background work and the server; returns the bound port."""

    async def drain(self) -> None:
        """Finishes or hands back the service's own work on a graceful stop; runs alongside
        the server's shutdown. Nothing by default."""
        return

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases every resource (the server has stopped by then)."""

    async def stop(self) -> None:
        """Stops serving at once, without a grace period, and closes everything."""
        await self.host.monitor.stop()
        await self.host.server.stop(0)
        await self.close()


async def serve_app(app: ServiceApp) -> None:
    """Starts `app`, serves until SIGTERM/SIGINT, then drains the app's work alongside the
    server's graceful shutdown, and closes the app (also when starting failed). A signal
    that arrives while the app starts is acted on once it has started."""
    try:
        app.host.install_signal_handlers()
        await app.start()
        await app.host.stop_requested()
        await asyncio.gather(app.drain(), app.host.shutdown())
    finally:
        try:
            await app.close()
        except Exception:
            log.warning("close_failed", exc_info=True)
