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


async def _replicas(nats_url: str) -> dict[str, tuple[int, str]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        found = {}
        for info in await js.streams_info():
            leader = info.cluster.leader if info.cluster is not None else ""
            found[info.config.name or ""] = (info.config.num_replicas, leader or "")
        return found
    finally:
        await nc.close()


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
        extra_env={**harness.BASE_ENV, "JETSTREAM_REPLICAS": "3"},
    )
    client = harness.Client(stack.tasks.target, stack.token())
    database_url = stack.env["DATABASE_URL"]
    try:
        streams = checks.run(_replicas(cluster.servers[0].url))
        wanted = {
            bus.JOBS_STREAM,
            bus.EVENTS_STREAM,
            bus.ADVISORIES_STREAM,
            f"KV_{bus.WORKERS_BUCKET}",
            f"KV_{bus.QUEUE_STATE_BUCKET}",
            f"KV_{bus.CANCELLATIONS_BUCKET}",
            f"KV_{bus.POLISH_CACHE_BUCKET}",
            f"OBJ_{bus.IMAGES_STORE}",
        }
        assert wanted <= set(streams)
        assert {name: streams[name][0] for name in wanted} == dict.fromkeys(wanted, 3)

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
    finally:
        client.close()
        stack.close()
