"""The subtask lifecycle: its states, every move between them, and the SQL naming them.

    pending --dispatch--> queued --a worker reports--> running --> succeeded | failed | cancelled
       |                    |                            |
       +--cancel / expire---+                            +--timeout--> pending (a new attempt)

A worker's report may be folded before the dispatcher marks the row queued, so every live
state may go straight to running or to an end. An ended row never moves again: RetryTask
supersedes failed and cancelled rows with new pending ones instead.

The SQL of the store, the dispatcher, the fold and the maintenance loop takes its state
names and sets from here, so a new state or move is one change in this module (and its
test). Why a subtask failed is `kiln.common.job_errors`, the vocabulary both services share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

PENDING, QUEUED, RUNNING = "pending", "queued", "running"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
STATES = (PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)

LIVE_STATES = (PENDING, QUEUED, RUNNING)
"""Not ended: a worker's report, a cancellation or the maintenance loop may still move it."""
WAITING_STATES = (PENDING, QUEUED)
"""Not started: cancelling the task or passing the age limit ends it."""
IN_FLIGHT_STATES = (QUEUED, RUNNING)
"""Published to a worker: counts against the queue's dispatch window."""
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
RETRYABLE_STATES = (FAILED, CANCELLED)
"""Ended rows RetryTask supersedes with new pending rows."""


@dataclasses.dataclass(frozen=True)
class Move:
    """One way a subtask row changes state: from any of `sources` to one of `targets`."""

    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]


DISPATCH = Move("dispatch", (PENDING,), (QUEUED,))
"""The dispatcher published the row's job."""
REPORT = Move("report", LIVE_STATES, (RUNNING, SUCCEEDED, FAILED, CANCELLED))
"""A worker's events folded (also how the tasks service itself fails a live row:
TIMEOUT after the last attempt, MAX_DELIVERIES, UNPUBLISHABLE)."""
CANCEL = Move("cancel", WAITING_STATES, (CANCELLED,))
"""CancelTask ends what has not started; running jobs end by their workers' reports."""
EXPIRE = Move("expire", WAITING_STATES, (FAILED,))
"""Waited past JOB_MAX_AGE_SECONDS (EXPIRED)."""
REQUEUE = Move("requeue", (RUNNING,), (PENDING,))
"""No sign of life past the time limit and grace: a new attempt."""
MOVES = (DISPATCH, REPORT, CANCEL, EXPIRE, REQUEUE)


def _table(moves: Iterable[Move]) -> Mapping[str, frozenset[str]]:
    table: dict[str, set[str]] = {state: set() for state in STATES}
    for move in moves:
        for source in move.sources:
            table[source].update(t for t in move.targets if t != source)
    return {state: frozenset(targets) for state, targets in table.items()}


TRANSITIONS = _table(MOVES)
"""state -> the states it may move to (a state never "moves" to itself)."""


def can_transition(old: str, new: str) -> bool:
    """Whether a row in state `old` may change to `new` (False for `old == new`)."""
    return new in TRANSITIONS.get(old, frozenset())


def sql(state: str) -> str:
    """A state as an SQL literal."""
    if state not in STATES:
        raise ValueError(f"unknown subtask state {state!r}")
    return f"'{state}'"


def sql_set(states: Iterable[str]) -> str:
    """States as an SQL list for `IN`, in the order given."""
    return "(" + ", ".join(sql(s) for s in states) + ")"


def sql_target(move: Move) -> str:
    """The one state `move` leads to, as an SQL literal."""
    (target,) = move.targets
    return sql(target)


LIVE_SQL = sql_set(LIVE_STATES)
IN_FLIGHT_SQL = sql_set(IN_FLIGHT_STATES)
RETRYABLE_SQL = sql_set(RETRYABLE_STATES)
DISPATCH_FROM_SQL, DISPATCH_TO_SQL = sql_set(DISPATCH.sources), sql_target(DISPATCH)
REPORT_FROM_SQL = sql_set(REPORT.sources)
CANCEL_SQL = sql_set(CANCEL.sources)
EXPIRE_SQL = sql_set(EXPIRE.sources)
REQUEUE_FROM_SQL, REQUEUE_TO_SQL = sql_set(REQUEUE.sources), sql_target(REQUEUE)
