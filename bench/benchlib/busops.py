"""Bus operations per job: messages counted by nats-server itself, before and after a run.

nats-server's monitoring endpoint counts every message a client sends it (`in_msgs`: a
publish, a JetStream API request, an ack, a pull request) and every message it delivers to
a client (`out_msgs`: a delivered job or event, a publish acknowledgement, an API reply).
`/connz` has the same counters per connection, and each Kiln connection is named after its
role (tasks, imagegen), so the difference over a run divided by the subtasks of the run is
what each role costs the broker per job. Idle traffic (heartbeats, pings, empty fetches) is
counted too, which over a 10,000-subtask run is a rounding error.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import urllib.request

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True)
class Counts:
    """Messages in (client -> server) and out (server -> client), by connection name."""

    sent: dict[str, int]
    received: dict[str, int]

    def minus(self, earlier: Counts) -> Counts:
        """The messages counted since `earlier`."""
        return Counts(
            sent={k: v - earlier.sent.get(k, 0) for k, v in self.sent.items()},
            received={k: v - earlier.received.get(k, 0) for k, v in self.received.items()},
        )


def snapshot(monitor_url: str) -> Counts:
    """The counters of every open connection now, summed per connection name."""
    with _NO_PROXY.open(f"{monitor_url}/connz?limit=4096", timeout=5) as response:
        document = json.loads(response.read())
    sent: collections.Counter[str] = collections.Counter()
    received: collections.Counter[str] = collections.Counter()
    for connection in document.get("connections") or []:
        name = connection.get("name") or "other"
        sent[name] += int(connection.get("in_msgs", 0))
        received[name] += int(connection.get("out_msgs", 0))
    return Counts(dict(sent), dict(received))


def per_job(
    delta: Counts, jobs: int, roles: tuple[str, ...] = ("imagegen", "tasks")
) -> dict[str, float]:
    """Messages per job of each role, sent and received, and all of them together."""
    figures: dict[str, float] = {}
    for role in roles:
        figures[f"{role} sent"] = delta.sent.get(role, 0) / jobs
        figures[f"{role} received"] = delta.received.get(role, 0) / jobs
    figures["all"] = (sum(delta.sent.values()) + sum(delta.received.values())) / jobs
    return figures
