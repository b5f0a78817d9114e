"""Polished prompts shared by every worker through the `polish_cache` KV bucket.

Keys are a SHA-256 of the polisher's configuration (API keys left out) and the prompt, so
a change of polisher or model starts a fresh cache. The first worker to store a polish wins
(`create`); a worker that lost the race uses the stored one, so every subtask with the same
prompt gets the same polished prompt even from a non-deterministic LLM polisher. The bucket
is a cache: when it fails, the worker polishes locally and carries on.
"""

from __future__ import annotations

import hashlib
import json

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from kiln.common import bus

log = structlog.get_logger("imagegen.polish")

_SECRET_OPTIONS = frozenset({"api_key"})


def namespace(kind: str, options: dict[str, object]) -> str:
    """What makes two polishes comparable: the polisher kind and its non-secret options."""
    public = {k: v for k, v in options.items() if k not in _SECRET_OPTIONS}
    return f"{kind}:{json.dumps(public, sort_keys=True, default=str)}"


class SharedPolishes:
    """Get and first-writer-wins put of polished prompts in the shared bucket."""

    def __init__(self, kv: KeyValue, space: str) -> None:
        self._kv = kv
        self._space = space

    @classmethod
    async def open(cls, js: JetStreamContext, space: str) -> SharedPolishes:
        """The bucket of an already provisioned bus (the tasks service creates it)."""
        return cls(await js.key_value(bus.POLISH_CACHE_BUCKET), space)

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self._space}\0{prompt}".encode()).hexdigest()

    async def get(self, prompt: str) -> str | None:
        """The shared polish of `prompt`, or None."""
        try:
            entry = await self._kv.get(self._key(prompt))
        except nats.js.errors.KeyNotFoundError:
            return None
        except Exception as error:  # a cache miss, not a failure
            log.warning("polish_cache_unavailable", error=type(error).__name__)
            return None
        return (entry.value or b"").decode() or None

    async def settle(self, prompt: str, polished: str) -> str:
        """Stores `polished` unless another worker stored one first; returns the one to use."""
        try:
            await self._kv.create(self._key(prompt), polished.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return await self.get(prompt) or polished
        except Exception as error:  # keep our own polish
            log.warning("polish_cache_unavailable", error=type(error).__name__)
        return polished
