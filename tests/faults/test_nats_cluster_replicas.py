"""A three-server NATS cluster with JETSTREAM_REPLICAS=3: one server is killed (-9) while a
task runs, and nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from faults import checks, harness

from kiln.common import bus, jetstream
from kiln.common.testing import PostgresServer
from kiln.common.testing.nats_cluster import NatsCluster
from kiln.common.testing.stack import KilnStack

JOBS = 40
STEP = 0.05  # about 0.4 s per render


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    """Three nats-servers in one JetStream cluster, authorization on."""
    with NatsCluster(3) as servers:
        yield servers


WANTED = (
    bus.JOBS_STREAM,
    bus.EVENTS_STREAM,
    bus.ADVISORIES_STREAM,
    f"KV_{bus.WORKERS_BUCKET}",
    f"KV_{bus.QUEUE_STATE_BUCKET}",
    f"KV_{bus.CANCELLATIONS_BUCKET}",
    f"KV_{bus.POLISH_CACHE_BUCKET}",
    f"OBJ_{bus.IMAGES_STORE}",
)
"""Every stream Kiln creates, the buckets' and the image store's included."""


async def _replicas(nats_url: str) -> dict[str, tuple[int | None, str, int]]:
    """Stream -> (configured replicas, leader, replicas in the cluster report)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        found = {}
        for name in WANTED:
            info = await js.stream_info(name)
            cluster = info.cluster
            leader = (cluster.leader if cluster is not None else None) or ""
            peers = len(cluster.replicas or []) + 1 if cluster is not None else 1
            found[name] = (info.config.num_replicas, leader, peers)
        return found
    finally:
        await nc.close()


CONSUMERS = (
    *((bus.JOBS_STREAM, bus.worker_consumer(q)) for q in bus.QUEUES),
    (bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER),
    (bus.ADVISORIES_STREAM, bus.ADVISORIES_CONSUMER),
)


async def _consumer_peers(nats_url: str) -> list[int]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        peers = []
        for stream, consumer in CONSUMERS:
            cluster = (await js.consumer_info(stream, consumer)).cluster
            peers.append(len(cluster.replicas or []) + 1 if cluster is not None else 1)
        return peers
    finally:
        await nc.close()


def _all_three_copies(nats_url: str) -> bool:
    streams = checks.run(_replicas(nats_url))
    if not all(replicas == 3 and peers == 3 for replicas, _, peers in streams.values()):
        return False
    return all(peers == 3 for peers in checks.run(_consumer_peers(nats_url)))


async def _provision_single_copy(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        settings = bus.BusSettings(jetstream_replicas=1)
        await jetstream.provision(nc.jetstream(), bus.tasks_topology(settings))
    finally:
        await nc.close()


@pytest.mark.long
@pytest.mark.timeout(300)
def test_killing_one_of_three_servers_loses_nothing(
    cluster: NatsCluster, private_postgres: PostgresServer, tmp_path: Path
) -> None:
    """With JETSTREAM_REPLICAS=3 every stream, bucket and the image store has three copies
    (those created earlier with one copy are updated);
    kill -9 of the server leading the JOBS stream while a 40-image task renders loses no
    job, event or image: the task finishes with every subtask succeeded exactly once and one
    stored image each, served by the two servers left."""
    # A bus made earlier with one copy of everything: the tasks service must scale it up.
    checks.run(_provision_single_copy(cluster.servers[0].url))
    stack = KilnStack.start(
        cluster.url,
        private_postgres.create_database("kiln"),
        tmp_path,
        workers=2,
        worker_env={**harness.slow(STEP), "WORKER_CONCURRENCY": "2"},
        # ack_wait above a failover's few seconds (leader elections of the streams and
        # consumers the killed server led), so the failover does not use up deliveries.
        extra_env={**harness.BASE_ENV, "JETSTREAM_REPLICAS": "3", "JOB_ACK_WAIT_SECONDS": "10"},
    )
    client = harness.Client(stack.tasks.target, stack.token())
    database_url = stack.env["DATABASE_URL"]
    try:
        # Scaling up copies the existing data (and the consumers) to the new peers; the
        # work-queue stream takes about ten seconds.
        checks.wait_until(
            lambda: _all_three_copies(cluster.servers[0].url),
            within=60,
            every=0.5,
            what="3 copies of every stream and consumer",
        )

        task = client.create(JOBS)
        checks.wait_until(
            lambda: checks.subtask_states(database_url, task.id).get("succeeded", 0) >= 5,
            within=60,
            what="5 images done",
        )
        leader = checks.run(_replicas(cluster.servers[0].url))[bus.JOBS_STREAM][1]
        victim = next(s for s in cluster.servers if s.cluster and s.cluster.server_name == leader)
        survivor = next(s for s in cluster.servers if s is not victim)
        at_kill = checks.subtask_states(database_url, task.id)
        victim.kill()
        killed = time.monotonic()
        took = checks.wait_all_finished(database_url, within=180)
        checks.wait_until(lambda: checks.settled(survivor.url), within=60, what="bus quiet")
        summary = checks.check_invariants(database_url, survivor.url)
        assert summary.states == {"succeeded": JOBS}
        assert summary.images == JOBS
        assert all(w.process is not None and w.process.poll() is None for w in stack.workers)
        harness.record(
            "NATS cluster R3, leader killed",
            succeeded_at_kill=at_kill.get("succeeded", 0),
            finished_after_kill_seconds=round(time.monotonic() - killed, 2),
            total_seconds=round(took, 2),
            max_delivery=summary.max_delivery,
        )
    except AssertionError:
        for process in (stack.tasks, *stack.workers):
            print(f"--- {process.name}\n{process.log_tail(60)}")
        raise
    finally:
        client.close()
        stack.close()
