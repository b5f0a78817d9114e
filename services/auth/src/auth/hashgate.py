"""A bounded gate for the password hashes of new accounts.

argon2id is deliberately expensive, and Register is public: without a bound, a burst of
registrations fills the worker threads and the CPU, and every Login (which must hash too)
waits behind them. The gate lets a few hashes run at once and a few more wait; past that a
registration is refused at once instead of queueing.
"""

from __future__ import annotations

import asyncio

from auth.passwords import PasswordHasher
from kiln.common import errors

BUSY_MESSAGE = "too many accounts are being created right now; try again in a few seconds"


class HashGate:
    """At most `concurrency` hashes at once, at most `max_waiting` callers queued."""

    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._max_waiting = max_waiting
        self._waiting = 0

    async def acquire(self) -> None:
        """Takes a slot, waiting if the queue has room; RESOURCE_EXHAUSTED if it has none."""
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise errors.ResourceExhausted(
                BUSY_MESSAGE, reason="REGISTRATION_BUSY", retry_after=1.0
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1

    def release(self) -> None:
        """Gives a slot back."""
        self._slots.release()

    async def hash(self, hasher: PasswordHasher, password: str) -> str:
        """`hasher.hash(password)` within a slot. A cancelled caller does not free the slot
        before the hash it started has finished: the thread keeps using the CPU until then."""
        await self.acquire()
        try:
            running = asyncio.ensure_future(hasher.hash(password))
        except BaseException:
            self.release()
            raise
        running.add_done_callback(lambda _done: self.release())
        return await asyncio.shield(running)
