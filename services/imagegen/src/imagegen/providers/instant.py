"""A provider that answers at once with a tiny solid image, to benchmark the pipeline.

It isolates the cost of everything around rendering (bus, storage, events). The colour still
depends on the prompt and seed, so duplicates and determinism checks behave as with real
providers. The image keeps the requested aspect ratio at 1/64 of the size, unless
`full_size` asks for the requested size (to include encoding costs in a benchmark). `delay`
makes each image take that long without using the CPU (a renderer of known speed).
"""

from __future__ import annotations

import asyncio

from PIL import Image

from imagegen.providers import base, theme

MODEL = "instant-v1"
_SHRINK = 64


class InstantProvider:
    """The `base.Provider` that does no work; see the module docstring."""

    name = "instant"
    model = MODEL

    def __init__(self, *, full_size: bool = False, delay: float = 0.0) -> None:
        self._full_size = full_size
        self._delay = delay

    async def render(
        self, request: base.RenderRequest, progress: base.ProgressCallback
    ) -> Image.Image:
        """A solid image whose colour comes from the prompt's palette, picked by the seed."""
        palette = theme.theme_for(request.prompt).palette
        colour = palette[request.seed % len(palette)]
        if self._full_size:
            size = (request.width, request.height)
        else:
            size = (max(1, request.width // _SHRINK), max(1, request.height // _SHRINK))
        image = Image.new("RGB", size, colour)
        if self._delay:
            await asyncio.sleep(self._delay)
        await progress(1, 1)
        return image

    async def aclose(self) -> None:
        """Nothing to release."""
