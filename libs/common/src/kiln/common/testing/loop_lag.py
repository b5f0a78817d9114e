"""Whether something blocks the event loop, judged by shares of time, not a fixed lag.

A fixed bound on the worst tick ("no tick late by more than 150 ms") fails on a loaded
machine where the loop's thread simply waits for a CPU now and then. Work run on the loop
instead of in a thread stalls it for the whole of each piece of work, so most of the run is
spent in stalls at least as long as one piece, and little of it ticking freely:
`free_share` measures that share.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

TICK_SECONDS = 0.005


@dataclasses.dataclass
class Ticks:
    """Gaps between the ticks of a task sleeping TICK_SECONDS at a time, and the time run."""

    gaps: list[float] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0

    def free_share(self, stall: float) -> float:
        """The share of the elapsed time the loop ticked freely: spent in gaps shorter than
        `stall` seconds. A loop blocked throughout (or never reached by the ticker) has
        none."""
        if self.elapsed <= 0:
            return 0.0
        return sum(g for g in self.gaps if g < stall) / self.elapsed


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Ticks]:
    """Ticks on the running loop for the duration of the block."""
    loop = asyncio.get_running_loop()
    ticks = Ticks()
    stop = asyncio.Event()

    async def tick() -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            ticks.gaps.append(now - last)
            last = now

    started = loop.time()
    task = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        stop.set()
        await task
        ticks.elapsed = loop.time() - started
