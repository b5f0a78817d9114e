"""The built-in Pillow renderer: determinism, prompt and seed dependence, progress, and
that rendering stays off the event loop."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat

from imagegen.providers import base, errors, procedural, theme
from kiln.common import ratios
from kiln.common.testing import loop_lag

SIDE = 256


def request(
    prompt: str = "a red fox in the snow", seed: int = 1, **size: int
) -> base.RenderRequest:
    """A small request; tests about behaviour do not need megapixels."""
    return base.RenderRequest(
        prompt=prompt, seed=seed, width=size.get("width", SIDE), height=size.get("height", SIDE)
    )


async def render(
    req: base.RenderRequest, provider: procedural.ProceduralProvider | None = None
) -> Image.Image:
    return await (provider or procedural.ProceduralProvider()).render(req, base.no_progress)


def mean_colour(image: Image.Image) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(image).mean)


def changed_fraction(first: Image.Image, second: Image.Image) -> float:
    """The share of pixels that differ noticeably between two images."""
    difference = ImageChops.difference(first, second).convert("L").point(lambda v: 255 * (v > 8))
    return ImageStat.Stat(difference).mean[0] / 255


async def test_same_input_same_pixels() -> None:
    """The same prompt, seed and size render to identical pixels, every time."""
    first = await render(request())
    second = await render(request())

    assert first.tobytes() == second.tobytes()


def test_painting_is_stable_across_processes() -> None:
    """The theme comes from SHA-256, not Python's salted `hash()`, so a prompt has the same
    palette in every worker process (pinned values)."""
    fox = theme.theme_for("a red fox in the snow")

    assert fox.palette[1:3] == ((255, 0, 0), (255, 250, 250))  # "red" and "snow"
    assert fox.digest.hex()[:16] == theme.theme_for("A red fox, in the SNOW!").digest.hex()[:16]


async def test_different_prompts_have_different_palettes() -> None:
    """Different prompts give visibly different colours (mean colours far apart)."""
    prompts = [
        "a red fox in the snow",
        "deep blue ocean",
        "misty mountains at dawn",
        "a bowl of lemons",
        "cyberpunk city at night",
    ]
    means = {prompt: mean_colour(await render(request(prompt))) for prompt in prompts}

    for first, second in itertools.combinations(prompts, 2):
        assert math.dist(means[first], means[second]) > 12, (first, second)


async def test_colour_words_colour_the_picture() -> None:
    """A colour the prompt names dominates: "red" is redder than "blue", and vice versa."""
    red_r, _, red_b = mean_colour(await render(request("a red fox")))
    blue_r, _, blue_b = mean_colour(await render(request("a blue fox")))

    assert red_r > blue_r
    assert blue_b > red_b


async def test_different_seeds_different_pictures() -> None:
    """Another seed moves the shapes: most pixels change, while the palette stays the same."""
    first = await render(request(seed=1))
    second = await render(request(seed=2))

    assert changed_fraction(first, second) > 0.3


@pytest.mark.parametrize("ratio", sorted(ratios.RATIO_SIZES))
async def test_renders_every_ratio_at_its_size(ratio: str) -> None:
    """Every ratio of the shared table renders at exactly its pixel size, in RGB."""
    width, height = ratios.size_for(ratio)

    image = await render(request(width=width, height=height))

    assert image.size == (width, height)
    assert image.mode == "RGB"


async def test_progress_is_reported_after_each_layer_in_order() -> None:
    """Progress arrives once per layer, in order, on the event loop's thread."""
    calls: list[tuple[int, int]] = []
    loop = asyncio.get_running_loop()

    async def progress(step: int, total: int) -> None:
        assert asyncio.get_running_loop() is loop
        calls.append((step, total))

    await procedural.ProceduralProvider().render(request(), progress)

    total = procedural.SHAPE_LAYERS + 2
    assert calls == [(step, total) for step in range(1, total + 1)]


async def test_render_does_not_block_the_event_loop() -> None:
    """A slow render (0.1 s of work per layer) leaves the event loop free: the loop spends
    almost none of the render stalled for a layer's duration (on the loop, every layer
    would stall it, so nearly all of the render would be such stalls)."""
    step = 0.1
    provider = procedural.ProceduralProvider(step_delay=step)
    async with loop_lag.ticking() as ticks:
        await provider.render(request(), base.no_progress)

    assert ticks.elapsed >= 8 * step  # the delay really happened
    assert ticks.free_share(stall=step) > 0.5, ticks.gaps


async def test_cancelling_stops_after_the_current_layer() -> None:
    """Cancelling a render stops it cooperatively: no further layers are painted or
    reported after the cancellation."""
    provider = procedural.ProceduralProvider(step_delay=0.05)
    calls: list[int] = []
    first_layer = asyncio.Event()

    async def progress(step: int, total: int) -> None:
        calls.append(step)
        first_layer.set()

    task = asyncio.create_task(provider.render(request(), progress))
    await first_layer.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reported = len(calls)
    await asyncio.sleep(0.2)  # long enough for several more layers, had it continued

    assert reported < procedural.SHAPE_LAYERS + 2
    assert len(calls) == reported


@pytest.mark.parametrize(("width", "height"), [(8, 512), (512, 0), (5000, 512), (-1, -1)])
async def test_unsupported_sizes_are_refused(width: int, height: int) -> None:
    """Sizes outside 16..max_side per side fail at once with a final UNSUPPORTED_SIZE."""
    with pytest.raises(errors.UnsupportedSize) as failure:
        await render(request(width=width, height=height))

    assert failure.value.type == "UNSUPPORTED_SIZE"
    assert not failure.value.retryable


async def test_max_side_is_configurable() -> None:
    """A smaller max_side refuses sizes the default would accept."""
    provider = procedural.ProceduralProvider(max_side=512)

    with pytest.raises(errors.UnsupportedSize):
        await render(request(width=1024, height=512), provider)


async def test_empty_prompt_still_renders() -> None:
    """An empty or punctuation-only prompt is a valid (if plain) picture, not a crash."""
    for prompt in ("", "!!!", "   "):
        image = await render(request(prompt))
        assert image.size == (SIDE, SIDE)


async def test_paint_matches_the_provider() -> None:
    """`paint` (the synchronous entry point for tools and benchmarks) draws the same picture
    as the provider does layer by layer."""
    painted = procedural.paint(request())
    rendered = await render(request())

    assert painted.tobytes() == rendered.tobytes()


@given(st.text(max_size=100), st.integers(min_value=0, max_value=2**63 - 1))
@settings(max_examples=40, deadline=None)
def test_any_prompt_and_seed_render(prompt: str, seed: int) -> None:
    """Whatever the prompt (any Unicode, even lone surrogates) and seed, a picture of the
    requested size comes out."""
    image = procedural.paint(base.RenderRequest(prompt, 32, 24, seed))

    assert image.size == (32, 24)
