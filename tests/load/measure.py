"""What the load tests measure: process memory from /proc, Prometheus counters from a
service's /metrics, NATS subscriptions from its monitoring endpoint, latency percentiles."""

from __future__ import annotations

import json
import statistics
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# The monitoring and metrics endpoints are local: never go through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def memory_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def metric_sum(port: int, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels`."""
    with _DIRECT.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        sample = line.startswith((f"{name}{{", f"{name} "))
        if sample and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def subscriptions(monitor_url: str, connection: str, prefix: str) -> int:
    """Subscriptions of the named NATS connection whose subject starts with `prefix`."""
    with _DIRECT.open(f"{monitor_url}/connz?subs=1&limit=1000", timeout=5) as response:
        connz = json.load(response)
    return sum(
        1
        for conn in connz.get("connections", [])
        if conn.get("name") == connection
        for subject in conn.get("subscriptions_list") or []
        if subject.startswith(prefix)
    )


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    if len(samples) < 2:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": round(cuts[49] * 1000, 1),
        "p95": round(cuts[94] * 1000, 1),
        "p99": round(cuts[98] * 1000, 1),
        "max": round(max(samples) * 1000, 1),
    }
