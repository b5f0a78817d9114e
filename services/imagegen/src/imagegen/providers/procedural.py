"""The built-in renderer: abstract pictures painted with Pillow, in eight layers.

Deterministic for (prompt, seed, size): the prompt picks the palette and motif
(`theme.theme_for`), the seed drives every random placement through `random.Random`
(never the global generator, and never `Image.effect_noise`, which cannot be seeded).
Shapes are placed in fractions of the canvas, so one prompt and seed give the same
composition at every aspect ratio.

Each layer is painted in a worker thread; between layers the provider reports progress on
the event loop. Cancelling the render therefore stops it after the current layer.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageOps

from imagegen.providers import base, errors, theme

MODEL = "procedural-v1"
SHAPE_LAYERS = 6
MIN_SIDE = 16
DEFAULT_MAX_SIDE = 4096

# The background is built at this size and scaled up: colour work on a 1 MP canvas costs
# ~15 ms per operation, on a 128 px one it is free, and a gradient does not need detail.
_BACKGROUND_SIDE = 128
_NOISE_SIDE = 12
_NOISE_WEIGHT = 0.3
_VIGNETTE_START = 140  # radial distance (0..255) where the edges begin to darken

Step = Callable[[], None]


class Painter:
    """One render in progress: call each of `steps` in order, then take `image`."""

    def __init__(self, request: base.RenderRequest) -> None:
        self.width = request.width
        self.height = request.height
        self.theme = theme.theme_for(request.prompt)
        # A string seed is hashed with SHA-512 by `random`, so this is stable everywhere.
        self.rng = random.Random(f"{request.seed}/{self.theme.digest.hex()}")  # noqa: S311 - art
        self.focus = (self.rng.uniform(0.25, 0.75), self.rng.uniform(0.25, 0.75))
        self.image: Image.Image  # painted by the first step
        self.steps: list[Step] = [
            self._background,
            *(self._layer_step(index) for index in range(SHAPE_LAYERS)),
            self._vignette,
        ]

    def _background(self) -> None:
        """A two-colour gradient with seeded soft clouds, painted small and scaled up."""
        dark, light = self.theme.palette[0], self.theme.palette[1]
        ramp = Image.radial_gradient("L") if self.theme.radial else Image.linear_gradient("L")
        ramp = _orient(ramp, self.theme.orientation).resize((_BACKGROUND_SIDE,) * 2)
        clouds = Image.frombytes(
            "L", (_NOISE_SIDE, _NOISE_SIDE), self.rng.randbytes(_NOISE_SIDE * _NOISE_SIDE)
        ).resize(ramp.size, Image.Resampling.BICUBIC)
        shade = Image.blend(ramp, clouds, _NOISE_WEIGHT)
        coloured = ImageOps.colorize(shade, black=dark, white=light)
        self.image = coloured.resize((self.width, self.height), Image.Resampling.BILINEAR)

    def _layer_step(self, index: int) -> Step:
        return lambda: self._shapes(index)

    def _shapes(self, index: int) -> None:
        """One layer of the motif: big translucent forms first, smaller crisper ones later."""
        draw = ImageDraw.Draw(self.image, "RGBA")
        scale = min(self.width, self.height) * 0.5 * 0.7**index
        count = 3 + 2 * index + self.rng.randrange(3)
        alpha = 70 + 25 * index
        paint = _MOTIFS[self.theme.motif]
        for _ in range(count):
            red, green, blue = self.rng.choice(self.theme.palette[1:])
            paint(self, draw, scale, (red, green, blue, min(alpha, 230)))

    def _vignette(self) -> None:
        """Darken the edges towards the palette's dark colour, which frames the focus."""
        falloff = Image.radial_gradient("L").point(
            lambda v: max(0, v - _VIGNETTE_START) * 255 // (255 - _VIGNETTE_START)
        )
        mask = falloff.resize((self.width, self.height), Image.Resampling.BILINEAR)
        edge = Image.new("RGB", self.image.size, self.theme.palette[0])
        self.image = Image.composite(edge, self.image, mask)

    def point(self, spread: float) -> tuple[float, float]:
        """A random point near the focus, in pixels; `spread` is a fraction of each side."""
        x = self.rng.gauss(self.focus[0], spread) * self.width
        y = self.rng.gauss(self.focus[1], spread) * self.height
        return x, y


Fill = tuple[int, int, int, int]
Motif = Callable[[Painter, ImageDraw.ImageDraw, float, Fill], None]


def _orbs(painter: Painter, draw: ImageDraw.ImageDraw, scale: float, fill: Fill) -> None:
    x, y = painter.point(0.3)
    radius = scale * painter.rng.uniform(0.3, 1.0)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def _shards(painter: Painter, draw: ImageDraw.ImageDraw, scale: float, fill: Fill) -> None:
    x, y = painter.point(0.3)
    angles = sorted(painter.rng.uniform(0, math.tau) for _ in range(3))
    corners = [
        (x + scale * math.cos(a), y + scale * math.sin(a) * painter.rng.uniform(0.5, 1))
        for a in angles
    ]
    draw.polygon(corners, fill=fill)


def _strata(painter: Painter, draw: ImageDraw.ImageDraw, scale: float, fill: Fill) -> None:
    _, middle = painter.point(0.35)
    amplitude = scale * painter.rng.uniform(0.1, 0.4)
    thickness = scale * painter.rng.uniform(0.15, 0.5)
    phase = painter.rng.uniform(0, math.tau)
    waves = painter.rng.uniform(0.5, 2.5)
    xs = [painter.width * i / 24 for i in range(25)]
    top = [
        (x, middle + amplitude * math.sin(phase + waves * math.tau * x / painter.width)) for x in xs
    ]
    bottom = [(x, y + thickness) for x, y in reversed(top)]
    draw.polygon(top + bottom, fill=fill)


def _rays(painter: Painter, draw: ImageDraw.ImageDraw, scale: float, fill: Fill) -> None:
    x, y = painter.focus[0] * painter.width, painter.focus[1] * painter.height
    reach = scale * 3
    start = painter.rng.uniform(0, 360)
    draw.pieslice(
        (x - reach, y - reach, x + reach, y + reach),
        start,
        start + painter.rng.uniform(3, 18),
        fill=fill,
    )


def _blocks(painter: Painter, draw: ImageDraw.ImageDraw, scale: float, fill: Fill) -> None:
    x, y = painter.point(0.3)
    half_width = scale * painter.rng.uniform(0.3, 1.0)
    half_height = scale * painter.rng.uniform(0.3, 1.0)
    draw.rounded_rectangle(
        (x - half_width, y - half_height, x + half_width, y + half_height),
        radius=min(half_width, half_height) * 0.2,
        fill=fill,
    )


_MOTIFS: dict[str, Motif] = {
    "orbs": _orbs,
    "shards": _shards,
    "strata": _strata,
    "rays": _rays,
    "blocks": _blocks,
}


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    turns = (
        None,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
    )
    turn = turns[orientation % len(turns)]
    return image if turn is None else image.transpose(turn)


def paint(request: base.RenderRequest) -> Image.Image:
    """Render `request` synchronously in the calling thread (for tools and benchmarks)."""
    painter = Painter(request)
    for step in painter.steps:
        step()
    return painter.image


class ProceduralProvider:
    """The `base.Provider` that paints with Pillow; `step_delay` seconds are added per layer.

    The delay is slept in the worker thread, like a slow model would occupy it, so tests that
    need long renders exercise the same off-loop path as real work. The negative prompt has
    nothing to steer in an abstract picture and is ignored.
    """

    name = "procedural"
    model = MODEL

    def __init__(self, *, step_delay: float = 0.0, max_side: int = DEFAULT_MAX_SIDE) -> None:
        self._step_delay = step_delay
        self._max_side = max_side

    async def render(
        self, request: base.RenderRequest, progress: base.ProgressCallback
    ) -> Image.Image:
        """Paint `request` layer by layer off the event loop, reporting each layer."""
        self._check_size(request)
        painter = Painter(request)
        total = len(painter.steps)
        for number, step in enumerate(painter.steps, start=1):
            await asyncio.to_thread(self._run, step)
            await progress(number, total)
        return painter.image

    def _run(self, step: Step) -> None:
        step()
        if self._step_delay:
            time.sleep(self._step_delay)

    def _check_size(self, request: base.RenderRequest) -> None:
        sides = (request.width, request.height)
        if not all(MIN_SIDE <= side <= self._max_side for side in sides):
            raise errors.UnsupportedSize(
                f"{request.width}x{request.height} is outside "
                f"{MIN_SIDE}..{self._max_side} pixels per side"
            )

    async def aclose(self) -> None:
        """Nothing to release."""
