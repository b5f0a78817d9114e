"""How many images per second the procedural provider renders and encodes, per format.

    python bench/bench_render.py [--ratio 1:1] [--runs 5]

One image at a time through the same path the worker uses (the provider's async `render`,
layers in a thread, then `imaging.encode` with provenance). After one warm-up image per
format, each run renders and encodes one image with a fresh seed; the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from imagegen import imaging
from imagegen.providers import base, procedural
from kiln.common import ratios

PROMPT = "a red fox in the snow, {seed}"


async def one(
    provider: procedural.ProceduralProvider,
    image_format: imaging.ImageFormat,
    ratio: str,
    seed: int,
) -> tuple[float, float, float]:
    """Seconds to render, to encode, and to make a thumbnail, for one image."""
    width, height = ratios.size_for(ratio)
    request = base.RenderRequest(PROMPT.format(seed=seed), width, height, seed)
    started = time.perf_counter()
    image = await provider.render(request, base.no_progress)
    rendered = time.perf_counter()
    provenance = imaging.Provenance(request.prompt, seed, provider.model, ratio)
    imaging.encode(image, image_format, provenance)
    encoded = time.perf_counter()
    imaging.thumbnail(image)
    return rendered - started, encoded - rendered, time.perf_counter() - encoded


async def main(ratio: str, runs: int) -> None:
    provider = procedural.ProceduralProvider()
    width, height = ratios.size_for(ratio)
    print(f"procedural provider, {width}x{height} ({ratio}), median of {runs} runs")
    print(
        f"{'format':<6} {'render ms':>10} {'encode ms':>10} {'total ms':>9} {'images/s':>9}"
        f" {'thumb ms':>9}"
    )
    for image_format in imaging.ImageFormat:
        await one(provider, image_format, ratio, seed=0)  # warm-up
        timings = [await one(provider, image_format, ratio, seed) for seed in range(1, runs + 1)]
        render = statistics.median(t[0] for t in timings)
        encode = statistics.median(t[1] for t in timings)
        total = statistics.median(t[0] + t[1] for t in timings)
        thumb = statistics.median(t[2] for t in timings)
        print(
            f"{image_format:<6} {render * 1000:>10.1f} {encode * 1000:>10.1f}"
            f" {total * 1000:>9.1f} {1 / total:>9.1f} {thumb * 1000:>9.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", default="1:1", choices=sorted(ratios.RATIO_SIZES))
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.ratio, arguments.runs))
