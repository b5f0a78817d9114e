"""Each distinct prompt polished once: an LRU cache per process, then the shared bucket.

Concurrent jobs with the same prompt share one polish call. Failures are not cached.
"""

from __future__ import annotations

import asyncio
import collections

from imagegen.polish import Polisher
from imagegen.shared_polish import SharedPolishes


class PolishCache:
    """`await cache.polish(prompt)`: the polished prompt, from memory when seen before."""

    def __init__(self, polisher: Polisher, size: int, shared: SharedPolishes | None = None) -> None:
        self.polisher = polisher
        self._shared = shared
        self._size = size
        self._done: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._running: dict[str, asyncio.Future[str]] = {}
        self.hits = 0
        self.shared_hits = 0
        self.misses = 0

    async def polish(self, prompt: str) -> str:
        """The polished `prompt`; the polisher's RenderError passes through."""
        found = self._done.get(prompt)
        if found is not None:
            self._done.move_to_end(prompt)
            self.hits += 1
            return found
        running = self._running.get(prompt)
        if running is not None:
            self.hits += 1
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                return await self.polish(prompt)  # the job polishing it was cancelled
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._running[prompt] = future
        try:
            polished = await self._polish(prompt)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # marks it retrieved when nobody else waits
            raise
        finally:
            self._running.pop(prompt, None)
        future.set_result(polished)
        self._done[prompt] = polished
        if len(self._done) > self._size:
            self._done.popitem(last=False)
        return polished

    async def _polish(self, prompt: str) -> str:
        if self._shared is not None:
            found = await self._shared.get(prompt)
            if found is not None:
                self.shared_hits += 1
                return found
        self.misses += 1
        polished = await self.polisher.polish(prompt)
        if self._shared is not None:
            polished = await self._shared.settle(prompt, polished)
        return polished
