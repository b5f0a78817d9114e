"""Aspect ratios and the pixel sizes they render at.

One table for the whole platform: the tasks service validates ratios and records sizes on
subtasks, workers render at those sizes. The sizes are the usual ~1 megapixel buckets of
SDXL-class models, every side a multiple of 64.
"""

from __future__ import annotations

DEFAULT_RATIO = "1:1"

RATIO_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "21:9": (1536, 640),
}


def size_for(ratio: str) -> tuple[int, int]:
    """Width and height for `ratio` (empty means the default); KeyError when unknown."""
    return RATIO_SIZES[ratio or DEFAULT_RATIO]
