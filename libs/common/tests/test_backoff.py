"""The one backoff rule: doubling from the first pause up to the cap, with optional spread."""

from __future__ import annotations

import random

from kiln.common.backoff import Backoff


def test_pauses_double_from_the_first_up_to_the_cap() -> None:
    """Without jitter the n-th failure waits first * 2**(n-1), never more than the cap."""
    delays = Backoff(first=0.05, cap=2.0)
    assert [delays.delay(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert delays.delay(10_000) == 2.0  # no overflow however long the failures last


def test_zero_or_negative_failure_counts_wait_the_first_pause() -> None:
    """A caller counting from 0 gets the first pause, not a fraction of it."""
    delays = Backoff(first=1.0, cap=60.0)
    assert delays.delay(0) == delays.delay(1) == 1.0


def test_jitter_spreads_within_its_fraction_and_the_bounds() -> None:
    """+-20% jitter varies the pause, stays within 20% of the doubled pause, and is clamped
    to [first, cap]."""
    delays = Backoff(first=1.0, cap=60.0, jitter=0.2, rng=random.Random(7))
    for failures in (1, 3, 6, 7, 30):
        base = min(60.0, 2.0 ** (failures - 1))
        seen = [delays.delay(failures) for _ in range(200)]
        assert min(seen) >= max(1.0, base * 0.8)
        assert max(seen) <= min(60.0, base * 1.2)
        assert len(set(seen)) > 1
