"""RPC metrics: every finished RPC moves the counters served on /metrics."""

from __future__ import annotations

import urllib.request

from kiln.common import metrics
from kiln.common.testing import free_port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def test_rpc_counters_move_and_are_served() -> None:
    """Observed RPCs show up by method and code on the metrics endpoint."""
    port = metrics.serve("127.0.0.1", free_port())
    assert port > 0
    assert metrics.serve("127.0.0.1", free_port()) == port  # one endpoint per process
    before = _scrape(port)
    metrics.observe_rpc("/kiln.test.v1.Svc/Do", "OK", 0.01)
    metrics.observe_rpc("/kiln.test.v1.Svc/Do", "OK", 0.02)
    after = _scrape(port)
    line = 'kiln_rpc_total{code="OK",method="/kiln.test.v1.Svc/Do"} 2.0'
    assert line not in before
    assert line in after
    assert 'kiln_rpc_duration_seconds_count{method="/kiln.test.v1.Svc/Do"} 2.0' in after


def test_negative_port_turns_metrics_off() -> None:
    """METRICS_PORT=-1 serves nothing."""
    assert metrics.serve("127.0.0.1", -1) == -1
