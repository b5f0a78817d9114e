"""Prometheus metrics of real processes move with traffic: RPCs on tasks, jobs and render
time on the worker, queue depth and watchers on tasks."""

from __future__ import annotations

import re
import time
import urllib.request

import grpc
import pytest

from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value for every sample on a /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def quiet(worker_port: int, within: float = 30.0) -> dict[str, float]:
    """The worker's metrics once it runs no job and its render count stands still: the
    stack is shared, and a job left by an earlier test must not count as this test's."""
    renders = 'kiln_imagegen_render_seconds_count{queue="standard"}'
    deadline = time.monotonic() + within
    last = scrape(worker_port)
    while True:
        time.sleep(0.3)
        now = scrape(worker_port)
        idle = now.get("kiln_imagegen_jobs_in_flight", 0) == 0
        if idle and now.get(renders, 0) == last.get(renders, 0):
            return now
        assert time.monotonic() < deadline, "the shared worker never went idle"
        last = now


@pytest.mark.timeout(120)
def test_counters_move_after_traffic(stack: KilnStack) -> None:
    """After a 3-image task runs, the tasks process counts its CreateTask RPC and reports
    queue gauges and a watcher, and the worker counts 3 succeeded jobs with render times.
    The operations metrics are there too: build_info on every service, database pool use
    and limit, NATS reconnects, webhook, max-deliveries and rejected-event counters; the
    worker's job slots next to in-flight, and queue-wait and submission-to-done histograms
    counting the 3 images."""
    tasks_port, worker_port = stack.tasks.metrics_port, stack.workers[0].metrics_port
    before_tasks, before_worker = scrape(tasks_port), quiet(worker_port)
    create = 'kiln_rpc_total{code="OK",method="/kiln.tasks.v1.TaskService/CreateTask"}'
    succeeded = 'kiln_imagegen_jobs_total{outcome="succeeded",queue="standard"}'
    assert before_tasks.get(create, 0) == 0

    token = (("authorization", f"Bearer {stack.token()}"),)
    with grpc.insecure_channel(stack.tasks.target) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        request = tasks_pb2.CreateTaskRequest(task_name="metrics", prompt_template="a {x}")
        request.variables["x"].values.extend(["cat", "dog", "owl"])
        task = stub.CreateTask(request, metadata=token, timeout=30).task
        watch = stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task.id), metadata=token)
        first = next(watch)
        assert first.snapshot
        assert scrape(tasks_port)["kiln_tasks_watchers"] == 1
        for _ in watch:
            pass

    after_tasks = scrape(tasks_port)
    assert after_tasks[create] == 1
    assert after_tasks["kiln_tasks_watchers"] == 0
    assert 'kiln_tasks_queue_depth{queue="standard",stage="outbox"}' in after_tasks
    assert 'kiln_tasks_outbox_lag_seconds{queue="standard"}' in after_tasks

    deadline = time.monotonic() + 10
    while scrape(worker_port).get(succeeded, 0) - before_worker.get(succeeded, 0) < 3:
        assert time.monotonic() < deadline, "worker counters did not move"
        time.sleep(0.2)
    after_worker = scrape(worker_port)
    renders = 'kiln_imagegen_render_seconds_count{queue="standard"}'
    assert after_worker[renders] - before_worker.get(renders, 0) == 3
    check_operations_metrics(stack, before_worker)


def _value(samples: dict[str, float], name: str, **labels: str) -> float | None:
    """The value of the sample `name` whose labels include `labels`, if there is one."""
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    return None


def check_operations_metrics(stack: KilnStack, before_worker: dict[str, float]) -> None:
    """Asserts the metrics alerts and dashboards rely on, after a 3-image standard task."""
    tasks_port, worker_port = stack.tasks.metrics_port, stack.workers[0].metrics_port
    done = "kiln_imagegen_job_latency_seconds_count"
    deadline = time.monotonic() + 20
    while (_value(scrape(worker_port), done, queue="standard") or 0) - (
        _value(before_worker, done, queue="standard") or 0
    ) < 3:
        assert time.monotonic() < deadline, "the latency histogram did not count the images"
        time.sleep(0.2)
    worker = scrape(worker_port)
    waits = "kiln_imagegen_queue_wait_seconds_count"
    assert (_value(worker, waits, queue="standard") or 0) - (
        _value(before_worker, waits, queue="standard") or 0
    ) >= 3
    assert (_value(worker, "kiln_imagegen_job_slots") or 0) >= 1
    assert _value(worker, "kiln_imagegen_jobs_in_flight") is not None
    assert _value(worker, "kiln_build_info", service="imagegen") == 1
    assert _value(worker, "kiln_nats_reconnects_total") == 0

    tasks = scrape(tasks_port)
    assert _value(tasks, "kiln_build_info", service="tasks") == 1
    limit = _value(tasks, "kiln_db_pool_max_connections", pool="tasks")
    assert limit is not None and limit > 0
    in_use = _value(tasks, "kiln_db_pool_connections", pool="tasks", state="in_use")
    assert in_use is not None and 0 <= in_use <= limit
    assert _value(tasks, "kiln_nats_reconnects_total") == 0
    assert _value(tasks, "kiln_tasks_jobs_max_deliveries_total") == 0
    assert _value(tasks, "kiln_tasks_webhook_attempts_total", outcome="failed") == 0
    assert _value(tasks, "kiln_tasks_events_rejected_total", reason="invalid") == 0
    auth = scrape(stack.auth.metrics_port)
    assert _value(auth, "kiln_build_info", service="auth") == 1
    assert _value(auth, "kiln_db_pool_max_connections", pool="auth") is not None
