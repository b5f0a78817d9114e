"""The one interface every prompt polisher implements."""

from __future__ import annotations

from typing import Protocol


class Polisher(Protocol):
    """Rewrites a prompt into a richer one with the same meaning.

    Failures are raised as `providers.RenderError` subclasses, classified like render
    failures, so the worker retries or gives up the same way. Polishers do not cache: the
    worker polishes each distinct prompt once.
    """

    @property
    def name(self) -> str:
        """The polisher kind, such as `rules` or `http`."""
        ...

    async def polish(self, prompt: str) -> str:
        """The polished prompt; an empty or blank prompt stays empty."""
        ...

    async def aclose(self) -> None:
        """Release connections; the polisher is unusable afterwards."""
        ...
