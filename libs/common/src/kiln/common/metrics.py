"""Prometheus metrics: the RPC metrics every server has, and the HTTP endpoint serving them.

Services define their own metrics (jobs, queue depth, watchers...) with prometheus_client
at module level; everything lands in the default registry, served on `METRICS_PORT`.
"""

from __future__ import annotations

import importlib.metadata
import platform
import weakref
from collections.abc import Iterator

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool

log = structlog.get_logger("kiln.metrics")

RPCS = Counter("kiln_rpc_total", "RPCs finished, by method and status code.", ["method", "code"])
RPC_SECONDS = Histogram(
    "kiln_rpc_duration_seconds",
    "RPC latency, by method (streams: until they end).",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


BUILD_INFO = Gauge(
    "kiln_build_info",
    "Always 1; the labels say which service and version this process runs.",
    ["service", "version", "python"],
)
NATS_RECONNECTS = Counter(
    "kiln_nats_reconnects_total", "Times the NATS connection was re-established."
)


def set_build_info(service: str) -> None:
    """Publishes `kiln_build_info` for `service` (its package version, if installed)."""
    try:
        version = importlib.metadata.version(f"kiln-{service}")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    BUILD_INFO.labels(service=service, version=version, python=platform.python_version()).set(1)


class _PoolCollector(Collector):
    """Reads each tracked SQLAlchemy pool at scrape time (no sampling loop)."""

    def __init__(self) -> None:
        self.pools: weakref.WeakValueDictionary[str, QueuePool] = weakref.WeakValueDictionary()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily(
            "kiln_db_pool_connections",
            "Database connections of a pool, by state (in_use: checked out; idle: open, free).",
            labels=["pool", "state"],
        )
        limit = GaugeMetricFamily(
            "kiln_db_pool_max_connections",
            "Most connections a pool opens (DB_POOL_SIZE + DB_MAX_OVERFLOW).",
            labels=["pool"],
        )
        for name, pool in list(self.pools.items()):
            used.add_metric([name, "in_use"], pool.checkedout())
            used.add_metric([name, "idle"], pool.checkedin())
            limit.add_metric([name], pool.size() + max(0, pool._max_overflow))
        yield used
        yield limit


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


def track_pool(name: str, pool: object) -> None:
    """Exports `pool` (a QueuePool; others are ignored) as `kiln_db_pool_*{pool=name}`."""
    if isinstance(pool, QueuePool):
        _POOLS.pools[name] = pool


def observe_rpc(method: str, code: str, seconds: float) -> None:
    """Records one finished RPC."""
    RPCS.labels(method=method, code=code).inc()
    RPC_SECONDS.labels(method=method).observe(seconds)


_serving_port: int | None = None


def serve(host: str, port: int) -> int:
    """Serves /metrics on `host:port` from a background thread; returns the bound port,
    or -1 when off (a negative port) or when the port is taken.

    The registry is per process, so so is the endpoint: a second server in the same process
    (tests run several) shares the first one's. A taken port is logged, not fatal: metrics
    must never stop a service from serving.
    """
    global _serving_port  # noqa: PLW0603 - one endpoint per process, by design
    if port < 0:
        return -1
    if _serving_port is not None:
        return _serving_port
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics_port_unavailable", port=port, error=str(exc))  # noqa: TRY400 - no traceback needed
        return -1
    _serving_port = int(server.server_port)
    log.info("metrics_serving", port=_serving_port)
    return _serving_port
