"""Exponential backoff: the pause before trying again after the n-th failure in a row.

One rule for every retry loop (the dispatcher's rounds while NATS or PostgreSQL fail, webhook
deliveries, a worker's failed jobs): the pause starts at `first`, doubles with each failure,
never passes `cap`, and may be spread by +-`jitter` (a fraction of it) so that many callers
failing together do not come back together.
"""

from __future__ import annotations

import dataclasses
import random

# 2**60 times any sane first pause is far past any cap; the exponent stops growing there.
_MAX_DOUBLINGS = 60


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Pauses of `first`, `2 * first`, `4 * first`... up to `cap` seconds, each spread by
    +-`jitter` (0.2 = +-20%) and kept within [`first`, `cap`]."""

    first: float
    cap: float
    jitter: float = 0.0
    rng: random.Random = dataclasses.field(default_factory=random.Random, compare=False)

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row (1 after the first)."""
        doublings = min(max(0, failures - 1), _MAX_DOUBLINGS)
        base: float = min(self.cap, self.first * 2**doublings)
        if not self.jitter:
            return base
        spread = 1 + self.jitter * self.rng.uniform(-1.0, 1.0)
        spread_delay: float = min(self.cap, max(self.first, base * spread))
        return spread_delay
