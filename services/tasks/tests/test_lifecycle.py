"""The subtask lifecycle as a table: which moves exist, and the SQL made from them."""

from __future__ import annotations

import pytest

from kiln.tasks.v1 import tasks_pb2
from tasks import convert, lifecycle
from tasks.lifecycle import CANCELLED, FAILED, PENDING, QUEUED, RUNNING, SUCCEEDED

ALLOWED = {
    (PENDING, QUEUED),
    (PENDING, RUNNING),
    (PENDING, SUCCEEDED),
    (PENDING, FAILED),
    (PENDING, CANCELLED),
    (QUEUED, RUNNING),
    (QUEUED, SUCCEEDED),
    (QUEUED, FAILED),
    (QUEUED, CANCELLED),
    (RUNNING, PENDING),
    (RUNNING, SUCCEEDED),
    (RUNNING, FAILED),
    (RUNNING, CANCELLED),
}


@pytest.mark.parametrize("old", lifecycle.STATES)
@pytest.mark.parametrize("new", lifecycle.STATES)
def test_transition_table_is_exactly_the_documented_moves(old: str, new: str) -> None:
    """can_transition allows the moves of the module docstring and nothing else: no state
    moves to itself, and an ended subtask never moves again."""
    assert lifecycle.can_transition(old, new) == ((old, new) in ALLOWED)


def test_ended_states_have_no_way_out_and_live_ones_can_end() -> None:
    """Terminal states are exactly those without moves; every live state can reach each
    end directly (a worker's final report may be the first one folded)."""
    ended = {state for state, targets in lifecycle.TRANSITIONS.items() if not targets}
    assert ended == set(lifecycle.TERMINAL_STATES)
    assert set(lifecycle.LIVE_STATES) | ended == set(lifecycle.STATES)
    for state in lifecycle.LIVE_STATES:
        assert lifecycle.TRANSITIONS[state].issuperset(lifecycle.TERMINAL_STATES)


def test_unknown_states_neither_move_nor_render_as_sql() -> None:
    """A misspelt state is refused by the SQL builder and moves nowhere."""
    assert not lifecycle.can_transition("queueud", RUNNING)
    assert not lifecycle.can_transition(PENDING, "runing")
    with pytest.raises(ValueError, match="runing"):
        lifecycle.sql("runing")


def test_sql_fragments_name_the_states_of_each_move() -> None:
    """The fragments the store, dispatcher, fold and maintenance loop interpolate."""
    assert lifecycle.LIVE_SQL == "('pending', 'queued', 'running')"
    assert lifecycle.IN_FLIGHT_SQL == "('queued', 'running')"
    assert lifecycle.RETRYABLE_SQL == "('failed', 'cancelled')"
    assert (lifecycle.DISPATCH_FROM_SQL, lifecycle.DISPATCH_TO_SQL) == ("('pending')", "'queued'")
    assert lifecycle.REPORT_FROM_SQL == lifecycle.LIVE_SQL
    assert lifecycle.CANCEL_SQL == lifecycle.EXPIRE_SQL == "('pending', 'queued')"
    assert (lifecycle.REQUEUE_FROM_SQL, lifecycle.REQUEUE_TO_SQL) == ("('running')", "'pending'")


def test_every_state_has_its_api_enum() -> None:
    """Each lifecycle state is shown as a SubtaskState, and each SubtaskState is a state."""
    assert set(convert.SUBTASK_STATE_ENUMS) == set(lifecycle.STATES)
    named = {v for v in tasks_pb2.SubtaskState.values() if v}
    assert set(convert.SUBTASK_STATE_ENUMS.values()) == named
