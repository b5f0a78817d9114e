"""Prompt -> picture -> encoded files: the work shared by jobs and the Generate RPC."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from PIL import Image

from imagegen import imaging, providers
from imagegen.polish_cache import PolishCache


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A rendered picture and how it was made."""

    image: Image.Image
    prompt: str
    polished_prompt: str
    polish_seconds: float
    render_seconds: float
    model: str


@dataclasses.dataclass(frozen=True)
class Encoded:
    """The stored file, its thumbnail, and how long encoding took."""

    image: imaging.EncodedImage
    thumbnail: imaging.EncodedImage
    seconds: float


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A request with its prompt polished (when asked): what the provider will render."""

    request: providers.RenderRequest
    polished_prompt: str
    polish_seconds: float


class Pipeline:
    """Polishes (when asked) and renders with the provider of a queue."""

    def __init__(self, providers_by_queue: dict[str, providers.Provider], polish: PolishCache):
        self.providers = providers_by_queue
        self.polish = polish

    async def render(
        self,
        queue: str,
        request: providers.RenderRequest,
        *,
        use_polish: bool,
        progress: providers.ProgressCallback,
    ) -> Rendered:
        """The picture for `request`; RenderError when polishing or rendering fails."""
        prepared = await self.prepare(request, use_polish=use_polish)
        return await self.render_prepared(queue, prepared, progress=progress)

    async def prepare(self, request: providers.RenderRequest, *, use_polish: bool) -> Prepared:
        """`request` with its prompt polished when `use_polish` (RenderError on failure)."""
        if not use_polish:
            return Prepared(request, "", 0.0)
        started = time.perf_counter()
        polished = await self.polish.polish(request.prompt)
        request = dataclasses.replace(request, prompt=polished or request.prompt)
        return Prepared(request, polished, time.perf_counter() - started)

    async def render_prepared(
        self, queue: str, prepared: Prepared, *, progress: providers.ProgressCallback
    ) -> Rendered:
        """The picture of an already prepared request."""
        provider = self.providers[queue]
        started = time.perf_counter()
        image = await provider.render(prepared.request, progress)
        return Rendered(
            image=image,
            prompt=prepared.request.prompt,
            polished_prompt=prepared.polished_prompt,
            polish_seconds=prepared.polish_seconds,
            render_seconds=time.perf_counter() - started,
            model=provider.model,
        )


async def encode(
    rendered: Rendered,
    image_format: imaging.ImageFormat,
    provenance: imaging.Provenance,
    *,
    with_thumbnail: bool = True,
) -> Encoded:
    """Encodes the image (and a thumbnail) in a worker thread, off the event loop."""

    def both() -> tuple[imaging.EncodedImage, imaging.EncodedImage]:
        image = imaging.encode(rendered.image, image_format, provenance)
        return image, imaging.thumbnail(rendered.image) if with_thumbnail else image

    started = time.perf_counter()
    image, thumb = await asyncio.to_thread(both)  # one trip to a thread, not two
    return Encoded(image, thumb, time.perf_counter() - started)
