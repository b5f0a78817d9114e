"""Wires an imagegen worker process: NATS, the job worker, heartbeats, the gRPC server.

`build()` returns an `ImagegenApp` that `kiln.common.server.serve_app` runs, like every
service. SIGTERM: health goes NOT_SERVING, the worker stops fetching, running jobs get
GRACE_PERIOD_SECONDS to finish, the rest are handed back (`nak`, no delay), the heartbeat
is deleted, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import structlog
from nats.aio.client import Client

from imagegen import generation, pipeline, polish, providers, retry, reuse, shared_polish
from imagegen.config import ImagegenConfig
from imagegen.controls import Controls
from imagegen.heartbeat import Heartbeat, WorkerStats, new_worker_id
from imagegen.job_runner import JobRunner, RunnerSettings
from imagegen.polish_cache import PolishCache
from imagegen.servicer import ImageGenServicer
from imagegen.store import ImageStore
from imagegen.worker import Worker
from kiln.common import bus, interceptors, jetstream, server, textlimits, verifiers
from kiln.common.account_states import AccountStates
from kiln.common.tokens import TokenVerifier
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc

SERVICE_NAME = imagegen_pb2.DESCRIPTOR.services_by_name["ImageGenService"].full_name
_ACCOUNTS_REPLAY_SECONDS = 10.0

log = structlog.get_logger("imagegen.app")


@dataclasses.dataclass
class Rendering:
    """The job-rendering half of a worker process: controls, pipeline, runner, the fetching
    worker and its heartbeat (the gRPC half is the `ServiceHost` of `ImagegenApp`)."""

    config: ImagegenConfig
    worker_id: str
    stats: WorkerStats
    controls: Controls
    pipeline: pipeline.Pipeline
    runner: JobRunner
    worker: Worker
    heartbeat: Heartbeat
    generator: generation.Generator

    @classmethod
    async def start(cls, config: ImagegenConfig, nc: Client) -> Rendering:
        """Waits until the bus is provisioned, then starts watching controls, heartbeating and
        fetching.

        ValueError (naming the option) when a provider or polisher is misconfigured.
        """
        built = build_providers(config)
        js = nc.jetstream()
        # The tasks service owns the bus; a worker may create nothing, so it waits.
        await jetstream.wait_until_provisioned(
            js, bus.worker_topology(config.worker_queues, config)
        )
        worker_id = new_worker_id()
        stats = WorkerStats()
        controls = Controls(nc)
        await controls.start()
        images = pipeline.Pipeline(
            built,
            PolishCache(
                polish.create_polisher(config.polisher, config.polisher_settings()),
                config.polish_cache_size,
                await shared_polish.SharedPolishes.open(
                    js, shared_polish.namespace(config.polisher, config.polisher_settings())
                ),
            ),
        )
        store = await ImageStore.open(js)
        runner = JobRunner(
            nc=nc,
            worker_id=worker_id,
            settings=runner_settings(config),
            pipeline=images,
            store=store,
            controls=controls,
            backoff=retry.Backoff(
                config.retry_backoff_min, config.retry_backoff_max, config.retry_jitter
            ),
            stats=stats,
            index=await reuse.ResultIndex.open(js, store, provider_identities(config, built)),
        )
        worker = Worker(
            js,
            queues=config.worker_queues,
            concurrency=config.concurrency,
            runner=runner,
            controls=controls,
            stats=stats,
            fetch_wait=config.fetch_wait,
        )
        heartbeat = Heartbeat(
            js,
            worker_id=worker_id,
            queues=config.worker_queues,
            concurrency=config.concurrency,
            stats=stats,
            interval=config.worker_heartbeat_ttl / 3,
        )
        await heartbeat.beat()
        heartbeat.start()
        await worker.start()
        generator = generation.Generator(config, images, controls.is_paused)
        return cls(config, worker_id, stats, controls, images, runner, worker, heartbeat, generator)

    async def stop(self, grace: float) -> None:
        """Stops fetching, finishes or hands back jobs, deletes the heartbeat, closes."""
        await self.worker.stop(grace)
        await self.heartbeat.stop()
        await self.controls.stop()
        for provider in self.pipeline.providers.values():
            await provider.aclose()
        await self.pipeline.polish.polisher.aclose()


def build_providers(config: ImagegenConfig) -> dict[str, providers.Provider]:
    """The provider of every served queue; ValueError names a bad option."""
    return {
        q: providers.create_provider(config.provider_kind(q), config.provider_options(q))
        for q in config.worker_queues
    }


def provider_identities(
    config: ImagegenConfig, built: dict[str, providers.Provider]
) -> dict[str, str]:
    """Each served queue's provider identity, part of every render key (see `reuse`)."""
    return {
        q: reuse.provider_identity(config.provider_kind(q), config.provider_options(q), p.model)
        for q, p in built.items()
    }


def runner_settings(config: ImagegenConfig) -> RunnerSettings:
    """The job runner's limits from the config."""
    return RunnerSettings(
        ack_wait=config.job_ack_wait,
        max_deliver=config.job_max_deliver,
        time_limit=config.job_time_limit,
        age_limit=config.job_max_age,
        paused_delay=config.paused_delay,
        publish_retry_delay=config.publish_retry_delay,
        check_interval=config.check_interval,
        progress_interval=config.progress_interval,
        crash_marker=config.fault_crash_marker,
    )


def build_host(
    config: ImagegenConfig,
    rendering: Rendering,
    nc: Client,
    verifier: TokenVerifier,
    accounts: AccountStates | None = None,
) -> server.ServiceHost:
    """The gRPC server: ImageGenService, health tied to NATS (and to the account states,
    when tokens are checked against them), reflection."""
    dependencies = [server.Dependency("nats", lambda: jetstream.ping(nc))]
    if accounts is not None:
        dependencies.append(server.Dependency("account_states", accounts.ready))
    servicer = ImageGenServicer(rendering.generator, config.worker_queues)
    return server.ServiceHost(
        config,
        [
            server.GrpcService(
                SERVICE_NAME,
                lambda s: imagegen_pb2_grpc.add_ImageGenServiceServicer_to_server(servicer, s),
            )
        ],
        interceptors=[
            *interceptors.standard_interceptors(verifier, accounts=accounts),
            textlimits.TextLimitInterceptor(generation.TEXT_LIMITS),
        ],
        dependencies=dependencies,
    )


@dataclasses.dataclass
class ImagegenApp(server.ServiceApp):
    """A built worker process: rendering under way, the gRPC host ready to start."""

    config: ImagegenConfig
    nc: Client
    rendering: Rendering
    host: server.ServiceHost
    accounts: AccountStates
    watching: asyncio.Task[None]
    auth_channel: grpc.aio.Channel
    drained: bool = False

    async def start(self) -> int:
        """Waits (briefly) for the account states, then serves; returns the port."""
        await self.accounts.wait_ready(_ACCOUNTS_REPLAY_SECONDS)
        port = await self.host.start()
        log.info("imagegen_ready", worker_id=self.rendering.worker_id)
        return port

    async def drain(self) -> None:
        """Stops fetching; running jobs get GRACE_PERIOD_SECONDS, the rest are handed back."""
        self.drained = True
        await self.rendering.stop(self.config.grace_period)

    async def close(self) -> None:
        """Hands back whatever was fetched (unless drained), then closes the connections."""
        try:
            if not self.drained:
                await self.rendering.stop(0)
        finally:
            await _close_connections(self.watching, self.auth_channel, self.nc)


async def _close_connections(
    watching: asyncio.Task[None], auth_channel: grpc.aio.Channel, nc: Client
) -> None:
    watching.cancel()
    await auth_channel.close()
    await nc.drain()


async def build(config: ImagegenConfig) -> ImagegenApp:
    """Connects to NATS, starts rendering once the bus is provisioned, and assembles the
    server. ValueError (naming the option) when a provider or polisher is misconfigured."""
    nc = await jetstream.connect(config, "imagegen")
    verifier, auth_channel = verifiers.auth_service_verifier(config.auth_target, config, config)
    # Until the first replay of the account states has arrived: NOT_SERVING, and
    # authenticated calls get UNAVAILABLE (kiln.common.account_states).
    accounts = AccountStates()
    watching = asyncio.create_task(accounts.run(nc), name="account-states")
    try:
        rendering = await Rendering.start(config, nc)
    except BaseException:
        await _close_connections(watching, auth_channel, nc)
        raise
    try:
        host = build_host(config, rendering, nc, verifier, accounts)  # TLS files are read here
    except BaseException:
        await rendering.stop(0)  # hand back whatever was fetched already
        await _close_connections(watching, auth_channel, nc)
        raise
    return ImagegenApp(config, nc, rendering, host, accounts, watching, auth_channel)


async def serve(config: ImagegenConfig) -> None:
    """Runs a worker process until SIGTERM."""
    try:
        app = await build(config)
    except ValueError as error:  # a provider or polisher option; the message names it
        log.error("config_invalid", problem=str(error))  # noqa: TRY400 - no traceback needed
        raise SystemExit(2) from None
    await server.serve_app(app)
