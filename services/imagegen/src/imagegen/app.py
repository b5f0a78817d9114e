"""Wires an imagegen worker process: NATS, the job worker, heartbeats, the gRPC server.

SIGTERM: health goes NOT_SERVING, the worker stops fetching, running jobs get
GRACE_PERIOD_SECONDS to finish, the rest are handed back (`nak`, no delay), the heartbeat
is deleted, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import structlog
from nats.aio.client import Client

from imagegen import events, generation, pipeline, polish, providers, retry, shared_polish
from imagegen.config import ImagegenConfig
from imagegen.controls import Controls
from imagegen.heartbeat import Heartbeat, WorkerStats, new_worker_id
from imagegen.job_runner import JobRunner, RunnerSettings
from imagegen.polish_cache import PolishCache
from imagegen.servicer import ImageGenServicer
from imagegen.store import ImageStore
from imagegen.worker import Worker
from kiln.common import bus, interceptors, jetstream, jwks, server, textlimits, tls
from kiln.common.account_states import AccountStates
from kiln.common.tokens import TokenVerifier
from kiln.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc

SERVICE_NAME = imagegen_pb2.DESCRIPTOR.services_by_name["ImageGenService"].full_name
_ACCOUNTS_REPLAY_SECONDS = 10.0

log = structlog.get_logger("imagegen.app")


@dataclasses.dataclass
class Runtime:
    """Everything a running worker process holds."""

    config: ImagegenConfig
    worker_id: str
    stats: WorkerStats
    controls: Controls
    pipeline: pipeline.Pipeline
    publisher: events.EventPublisher
    runner: JobRunner
    worker: Worker
    heartbeat: Heartbeat
    generator: generation.Generator

    @classmethod
    async def start(cls, config: ImagegenConfig, nc: Client) -> Runtime:
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
        publisher = events.EventPublisher(
            js,
            worker_id,
            max_events=config.event_batch,
            linger=config.event_linger,
        )
        publisher.start()
        runner = JobRunner(
            nc=nc,
            worker_id=worker_id,
            settings=runner_settings(config),
            pipeline=images,
            store=await ImageStore.open(js),
            publisher=publisher,
            controls=controls,
            backoff=retry.Backoff(
                config.retry_backoff_min, config.retry_backoff_max, config.retry_jitter
            ),
            stats=stats,
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
        return cls(
            config,
            worker_id,
            stats,
            controls,
            images,
            publisher,
            runner,
            worker,
            heartbeat,
            generator,
        )

    async def stop(self, grace: float) -> None:
        """Stops fetching, finishes or hands back jobs, deletes the heartbeat, closes."""
        await self.worker.stop(grace)
        await self.publisher.stop()  # the events of jobs that ended, STARTED ones too
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


def runner_settings(config: ImagegenConfig) -> RunnerSettings:
    """The job runner's limits from the config."""
    return RunnerSettings(
        ack_wait=config.job_ack_wait,
        max_deliver=config.job_max_deliver,
        time_limit=config.time_limit,
        age_limit=config.age_limit,
        paused_delay=config.paused_delay,
        publish_retry_delay=config.publish_retry_delay,
        check_interval=config.check_interval,
        progress_interval=config.progress_interval,
        crash_marker=config.fault_crash_marker,
    )


def build_host(
    config: ImagegenConfig,
    runtime: Runtime,
    nc: Client,
    verifier: TokenVerifier,
    accounts: AccountStates | None = None,
) -> server.ServiceHost:
    """The gRPC server: ImageGenService, health tied to NATS (and to the account states,
    when tokens are checked against them), reflection."""
    dependencies = [server.Dependency("nats", lambda: jetstream.ping(nc))]
    if accounts is not None:
        dependencies.append(server.Dependency("account_states", accounts.ready))
    servicer = ImageGenServicer(runtime.generator, config.worker_queues)
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


async def serve(config: ImagegenConfig) -> None:
    """Runs a worker process until SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    nc = await jetstream.connect(config, "imagegen")
    auth_channel = tls.channel(config.auth_target, config)
    # Until the first replay of the account states has arrived: NOT_SERVING, and
    # authenticated calls get UNAVAILABLE (kiln.common.account_states).
    accounts = AccountStates()
    watching = asyncio.create_task(accounts.run(nc), name="account-states")
    try:
        try:
            runtime = await Runtime.start(config, nc)
        except ValueError as error:  # a provider or polisher option; the message names it
            log.error("config_invalid", problem=str(error))  # noqa: TRY400 - no traceback needed
            raise SystemExit(2) from None
        verifier = TokenVerifier(
            jwks.JwksKeySource(jwks.grpc_jwks_fetcher(auth_channel)),
            config.jwt_issuer,
            config.jwt_audience,
            config.jwt_leeway,
        )
        await accounts.wait_ready(_ACCOUNTS_REPLAY_SECONDS)
        host = build_host(config, runtime, nc, verifier, accounts)
        try:
            await host.start()
        except BaseException:
            await runtime.stop(0)  # hand back whatever was fetched already
            raise
        log.info("imagegen_ready", worker_id=runtime.worker_id)
        await stopping.wait()
        await asyncio.gather(runtime.stop(config.grace_period), host.shutdown())
    finally:
        watching.cancel()
        await auth_channel.close()
        await nc.drain()
