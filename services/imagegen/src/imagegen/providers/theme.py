"""What a prompt decides about a procedural picture: its palette and its motif.

Everything here is a pure function of the prompt's words, hashed with SHA-256 (Python's
`hash()` is salted per process, so it would break determinism across workers). Colour words
the prompt names ("a red fox in the snow") become palette colours, so pictures of different
prompts differ in a way a person can see, not only in a checksum.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import re

from PIL import ImageColor

RGB = tuple[int, int, int]

MOTIFS = ("orbs", "shards", "strata", "rays", "blocks")

# Hue offsets (in turns) of the classic colour schemes; the first entry is the base hue.
_SCHEMES: tuple[tuple[float, ...], ...] = (
    (0.0, 0.06, -0.06, 0.12, -0.12),  # analogous
    (0.0, 0.5, 0.04, 0.54, -0.04),  # complementary
    (0.0, 1 / 3, 2 / 3, 0.05, 0.38),  # triadic
    (0.0, 0.42, 0.58, 0.08, -0.08),  # split complementary
)
# Lightness of each palette slot: a dark background end, a light one, then shape colours.
_LIGHTNESS = (0.16, 0.55, 0.62, 0.48, 0.72)
_PALETTE_SIZE = len(_LIGHTNESS)
_MAX_NAMED_COLOURS = 3
_WORD = re.compile(r"[^\W_]+")


@dataclasses.dataclass(frozen=True)
class Theme:
    """Palette (background dark, background light, shape colours...) and composition."""

    palette: tuple[RGB, ...]
    motif: str
    radial: bool
    orientation: int
    digest: bytes


def words(prompt: str) -> list[str]:
    """The prompt's words, lower-cased, without punctuation."""
    return _WORD.findall(prompt.lower())


def theme_for(prompt: str) -> Theme:
    """The theme of `prompt`; the same words in the same order always give the same theme."""
    found = words(prompt)
    digest = hashlib.sha256(" ".join(found).encode("utf-8", "surrogatepass")).digest()
    named = _named_colours(found)
    base_hue = _hue(named[0]) if named else int.from_bytes(digest[:2], "big") / 65536
    scheme = _SCHEMES[digest[2] % len(_SCHEMES)]
    saturation = 0.45 + 0.5 * digest[3] / 255
    derived = [
        _rgb((base_hue + offset) % 1.0, lightness, saturation)
        for offset, lightness in zip(scheme, _LIGHTNESS, strict=True)
    ]
    # Named colours take the light background end and the first shape slots, so they
    # dominate the picture; the dark end stays derived to keep contrast.
    palette = [derived[0], *named, *derived[1 + len(named) :]][:_PALETTE_SIZE]
    return Theme(
        palette=tuple(palette),
        motif=MOTIFS[digest[4] % len(MOTIFS)],
        radial=bool(digest[5] & 1),
        orientation=digest[6] % 4,
        digest=digest,
    )


def _named_colours(found: list[str]) -> list[RGB]:
    colours: list[RGB] = []
    for word in found:
        if word in ImageColor.colormap:
            red, green, blue = ImageColor.getrgb(word)[:3]
            colour = (red, green, blue)
            if colour not in colours:
                colours.append(colour)
        if len(colours) == _MAX_NAMED_COLOURS:
            break
    return colours


def _hue(colour: RGB) -> float:
    hue, _, _ = colorsys.rgb_to_hls(*(channel / 255 for channel in colour))
    return hue


def _rgb(hue: float, lightness: float, saturation: float) -> RGB:
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return (round(red * 255), round(green * 255), round(blue * 255))
