"""The one interface every image provider implements, and what a render is asked for."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol

from PIL import Image

ProgressCallback = Callable[[int, int], Awaitable[None]]
"""Called on the event loop as `progress(step, total_steps)`, in step order.

Providers await it between steps, so it should be quick (publish and return).
"""


@dataclasses.dataclass(frozen=True)
class RenderRequest:
    """One image to render: the final prompt (already polished, if at all), size and seed."""

    prompt: str
    width: int
    height: int
    seed: int
    negative_prompt: str = ""


class Provider(Protocol):
    """Turns a `RenderRequest` into a picture.

    `render` never blocks the event loop (CPU work runs in a thread), so heartbeats keep
    flowing during a long render, and cancelling the awaiting task stops the render at the
    next step. Failures are raised as `errors.RenderError` subclasses only.
    """

    @property
    def name(self) -> str:
        """The provider kind, such as `procedural` or `http`."""
        ...

    @property
    def model(self) -> str:
        """The model that renders, recorded in every image's provenance."""
        ...

    async def render(self, request: RenderRequest, progress: ProgressCallback) -> Image.Image:
        """Render `request`; the image's actual size may differ from the one asked for."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources; the provider is unusable afterwards."""
        ...


async def no_progress(step: int, total: int) -> None:
    """A `ProgressCallback` that ignores progress, for callers that do not report it."""
    del step, total
