"""Polishing each distinct prompt once: per process, and across workers via the KV bucket."""

from __future__ import annotations

import asyncio
import itertools

import nats
import pytest

from imagegen import providers, shared_polish
from imagegen.polish_cache import PolishCache
from kiln.common import bus, jetstream
from kiln.common.testing.nats_server import NatsServer


class CountingPolisher:
    """A polisher whose answers differ on every call, like a sampling LLM."""

    name = "counting"

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self._fail = fail
        self._numbers = itertools.count(1)

    async def polish(self, prompt: str) -> str:
        self.calls += 1
        await asyncio.sleep(0.05)
        if self._fail:
            raise providers.ProviderUnavailable("polisher down")
        return f"{prompt}, take {next(self._numbers)}"

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_concurrent_requests_for_one_prompt_share_one_polish() -> None:
    """Jobs polishing the same prompt at once wait for one polisher call; later ones hit the
    LRU cache; a failure is not cached."""
    polisher = CountingPolisher()
    cache = PolishCache(polisher, size=2)
    results = await asyncio.gather(*(cache.polish("a fox") for _ in range(5)))
    assert set(results) == {"a fox, take 1"}
    assert polisher.calls == 1
    await cache.polish("b")
    await cache.polish("c")
    assert await cache.polish("a fox") == "a fox, take 4"  # evicted (size 2), polished again
    assert polisher.calls == 4

    failing = PolishCache(CountingPolisher(fail=True), size=2)
    for _ in range(2):
        with pytest.raises(providers.ProviderUnavailable):
            await failing.polish("x")


async def test_workers_share_polishes_and_agree_on_one(private_nats: NatsServer) -> None:
    """Two workers polishing one prompt end up with the same polished prompt (the first
    stored wins), and a third worker takes it from the bucket without calling its polisher."""
    nc = await nats.connect(private_nats.url)
    try:
        js = nc.jetstream()
        await jetstream.provision(js, bus.tasks_topology(bus.BusSettings()))
        space = shared_polish.namespace("counting", {"model": "m", "api_key": "secret"})
        assert "secret" not in space
        workers = [
            PolishCache(CountingPolisher(), 16, await shared_polish.SharedPolishes.open(js, space))
            for _ in range(3)
        ]
        first, second = await asyncio.gather(
            workers[0].polish("a harbour"), workers[1].polish("a harbour")
        )
        assert first == second
        third = await workers[2].polish("a harbour")
        assert third == first
        assert workers[2].shared_hits == 1
        assert workers[2].polisher.calls == 0  # type: ignore[attr-defined]
    finally:
        await nc.close()
