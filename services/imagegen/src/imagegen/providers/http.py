"""A provider backed by an external text-to-image API, in one of two request shapes.

- `a1111`: AUTOMATIC1111 / Forge style, POST `sdapi/v1/txt2img`, answer `{"images": [b64]}`.
  A `model` option switches the server's checkpoint per request via `override_settings`.
- `openai`: OpenAI images style, POST `v1/images/generations`, answer
  `{"data": [{"b64_json": ...}]}`. This API has no seed or negative prompt, so those are
  not sent (the subtask still records its seed).

The API renders in one opaque call, so progress is reported once, when the image arrives.
If the API returns another size than asked, the image is accepted as is: the worker records
the actual size, which is the truth about the stored file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import io
from collections.abc import Callable

import structlog
from PIL import Image

from imagegen.providers import base, http_api

log = structlog.get_logger()

DEFAULT_TIMEOUT = 120.0
DEFAULT_STEPS = 30


@dataclasses.dataclass(frozen=True)
class _ApiStyle:
    path: str
    payload: Callable[[base.RenderRequest, str, int], dict[str, object]]
    image_field: Callable[[object], object]


def _a1111_payload(request: base.RenderRequest, model: str, steps: int) -> dict[str, object]:
    payload: dict[str, object] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": request.width,
        "height": request.height,
        "seed": request.seed,
        "steps": steps,
    }
    if model:
        payload["override_settings"] = {"sd_model_checkpoint": model}
    return payload


def _a1111_image(body: object) -> object:
    images = body.get("images") if isinstance(body, dict) else None
    return images[0] if isinstance(images, list) and images else None


def _openai_payload(request: base.RenderRequest, model: str, steps: int) -> dict[str, object]:
    del steps  # the API chooses its own
    return {
        "model": model,
        "prompt": request.prompt,
        "size": f"{request.width}x{request.height}",
        "n": 1,
        "response_format": "b64_json",
    }


def _openai_image(body: object) -> object:
    data = body.get("data") if isinstance(body, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    return first.get("b64_json") if isinstance(first, dict) else None


API_STYLES: dict[str, _ApiStyle] = {
    "a1111": _ApiStyle("sdapi/v1/txt2img", _a1111_payload, _a1111_image),
    "openai": _ApiStyle("v1/images/generations", _openai_payload, _openai_image),
}


class HttpProvider:
    """The `base.Provider` that calls an external API; see the module docstring."""

    name = "http"

    def __init__(
        self,
        *,
        base_url: str,
        api_style: str,
        api_key: str | None = None,
        model: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        steps: int = DEFAULT_STEPS,
    ) -> None:
        if api_style not in API_STYLES:
            raise ValueError(f"api_style must be one of {sorted(API_STYLES)}, got {api_style!r}")
        if api_style == "openai" and not model:
            raise ValueError("the openai api_style needs a model")
        self._style = API_STYLES[api_style]
        self._api_style = api_style
        self._model = model
        self._timeout = timeout
        self._steps = steps
        self._client = http_api.make_client(base_url, api_key, timeout)

    @property
    def model(self) -> str:
        """The configured model, or the API style when the server's loaded model is used."""
        return self._model or self._api_style

    async def render(
        self, request: base.RenderRequest, progress: base.ProgressCallback
    ) -> Image.Image:
        """Ask the API for one image and decode it off the event loop."""
        payload = self._style.payload(request, self._model, self._steps)
        body = await http_api.post_json(
            self._client, self._style.path, payload, time_limit=self._timeout
        )
        where = http_api.endpoint(self._client, self._style.path)
        encoded = self._style.image_field(body)
        if not isinstance(encoded, str) or not encoded:
            raise http_api.bad_answer(where, "no base64 image in the answer")
        image = await asyncio.to_thread(_decode, encoded, where)
        if image.size != (request.width, request.height):
            log.info(
                "render_size_differs",
                provider=self.name,
                requested=f"{request.width}x{request.height}",
                actual=f"{image.width}x{image.height}",
            )
        await progress(1, 1)
        return image

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _decode(encoded: str, where: str) -> Image.Image:
    # Some servers send a data URL ("data:image/png;base64,...") instead of bare base64.
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    try:
        # No `with`: closing the file would also free the pixels we are about to return.
        image = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
        image.load()
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as error:
        why = f"image does not decode ({type(error).__name__})"
        raise http_api.bad_answer(where, why) from None
    return image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
