"""Encoding, thumbnails and embedded provenance (`imagegen.imaging`)."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imagegen import imaging
from imagegen.providers import base, procedural
from kiln.common import ratios

FORMATS = list(imaging.ImageFormat)
PROVENANCE = imaging.Provenance(
    prompt="a red fox in the snow, 雪の中の狐 ☃",
    negative_prompt="blurry, watermark",
    seed=1234567890123,
    model="procedural-v1",
    ratio="16:9",
)


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    """A real 16:9 render, so encoders see realistic content."""
    width, height = ratios.size_for("16:9")
    return procedural.paint(base.RenderRequest("a red fox in the snow", width, height, 3))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("image_format", "content_type", "pillow_format"),
    [("png", "image/png", "PNG"), ("webp", "image/webp", "WEBP"), ("jpeg", "image/jpeg", "JPEG")],
)
def test_each_format_round_trips(
    picture: Image.Image, image_format: str, content_type: str, pillow_format: str
) -> None:
    """Each format encodes to a file of that format, with its content type and the
    picture's size, and decodes back to that size."""
    encoded = imaging.encode(picture, image_format, PROVENANCE)

    assert encoded.format == image_format
    assert encoded.content_type == content_type
    assert (encoded.width, encoded.height) == picture.size
    back = decoded(encoded.data)
    assert back.format == pillow_format
    assert back.size == picture.size


def test_png_is_lossless(picture: Image.Image) -> None:
    """PNG keeps every pixel exactly."""
    encoded = imaging.encode(picture, imaging.ImageFormat.PNG)

    assert decoded(encoded.data).convert("RGB").tobytes() == picture.tobytes()


@pytest.mark.parametrize("image_format", FORMATS)
def test_sha256_and_size_describe_the_bytes(
    picture: Image.Image, image_format: imaging.ImageFormat
) -> None:
    """`sha256` is the hex SHA-256 of exactly `data`, and `size` is its length."""
    encoded = imaging.encode(picture, image_format)

    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    assert encoded.size == len(encoded.data) > 0


@pytest.mark.parametrize("image_format", FORMATS)
def test_encoding_is_deterministic(picture: Image.Image, image_format: imaging.ImageFormat) -> None:
    """The same picture and provenance encode to the same bytes, so a re-rendered subtask
    stores an identical object (same sha256)."""
    first = imaging.encode(picture, image_format, PROVENANCE)
    second = imaging.encode(picture, image_format, PROVENANCE)

    assert first.sha256 == second.sha256


@pytest.mark.parametrize("image_format", FORMATS)
def test_provenance_is_readable_from_every_format(
    picture: Image.Image, image_format: imaging.ImageFormat
) -> None:
    """Prompt (non-ASCII too), negative prompt, seed, model, ratio and Kiln version are
    embedded in each format's metadata and read back unchanged."""
    encoded = imaging.encode(picture, image_format, PROVENANCE)

    assert imaging.read_provenance(encoded.data) == {
        "prompt": PROVENANCE.prompt,
        "negative_prompt": "blurry, watermark",
        "seed": 1234567890123,
        "model": "procedural-v1",
        "ratio": "16:9",
        "kiln_version": imaging.KILN_VERSION,
    }


@pytest.mark.parametrize("image_format", FORMATS)
def test_no_provenance_reads_as_empty(
    picture: Image.Image, image_format: imaging.ImageFormat
) -> None:
    """A file encoded without provenance reads back as `{}`, not an error."""
    encoded = imaging.encode(picture, image_format)

    assert imaging.read_provenance(encoded.data) == {}


def test_foreign_files_read_as_empty() -> None:
    """Images from elsewhere, with or without someone else's metadata, read as `{}`."""
    plain = io.BytesIO()
    Image.new("RGB", (8, 8)).save(plain, "PNG")
    described = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "holiday photo"
    Image.new("RGB", (8, 8)).save(described, "JPEG", exif=exif)

    assert imaging.read_provenance(plain.getvalue()) == {}
    assert imaging.read_provenance(described.getvalue()) == {}


def test_not_an_image_is_a_value_error() -> None:
    """Bytes that are no image raise ValueError."""
    with pytest.raises(ValueError, match="not a readable image"):
        imaging.read_provenance(b"definitely not an image")


@pytest.mark.parametrize("image_format", FORMATS)
def test_huge_prompts_are_shortened_to_fit(image_format: imaging.ImageFormat) -> None:
    """A prompt too long for JPEG's 64 KiB EXIF segment is shortened and flagged instead of
    failing the encode; the rest of the provenance is intact."""
    huge = imaging.Provenance(prompt="ü" * 50_000, seed=1, model="m", ratio="1:1")

    encoded = imaging.encode(Image.new("RGB", (32, 32)), image_format, huge)

    found = imaging.read_provenance(encoded.data)
    assert found["truncated"] is True
    assert 0 < len(str(found["prompt"])) < 50_000
    assert set(str(found["prompt"])) == {"ü"}
    assert found["seed"] == 1


@pytest.mark.parametrize("ratio", sorted(ratios.RATIO_SIZES))
def test_thumbnail_longest_side_is_256(ratio: str) -> None:
    """For every ratio the thumbnail is a WebP whose longest side is 256, aspect kept."""
    width, height = ratios.size_for(ratio)

    thumb = imaging.thumbnail(Image.new("RGB", (width, height), (10, 120, 200)))

    assert thumb.content_type == "image/webp"
    assert max(thumb.width, thumb.height) == 256
    assert abs(thumb.width / thumb.height - width / height) < 0.02
    assert decoded(thumb.data).size == (thumb.width, thumb.height)


def test_thumbnail_never_enlarges_and_leaves_the_original_alone() -> None:
    """A picture already smaller than 256 keeps its size; the source image is not changed."""
    small = Image.new("RGB", (100, 60))
    big = Image.new("RGB", (1024, 1024))

    assert (imaging.thumbnail(small).width, imaging.thumbnail(small).height) == (100, 60)
    imaging.thumbnail(big)
    assert big.size == (1024, 1024)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "CMYK", "I;16"])
@pytest.mark.parametrize("image_format", FORMATS)
def test_any_mode_encodes(mode: str, image_format: imaging.ImageFormat) -> None:
    """Images in other modes (alpha, palette, grey, CMYK, 16-bit) are converted as the
    format needs instead of failing."""
    image = Image.new(mode, (16, 16))

    encoded = imaging.encode(image, image_format, PROVENANCE)

    assert decoded(encoded.data).size == (16, 16)


def test_alpha_survives_where_the_format_has_it() -> None:
    """Transparency survives PNG and WebP; JPEG, which has none, drops it."""
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 128))

    assert decoded(imaging.encode(image, "png").data).mode == "RGBA"
    assert decoded(imaging.encode(image, "webp").data).mode == "RGBA"
    assert decoded(imaging.encode(image, "jpeg").data).mode == "RGB"


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [("png", "png"), ("PNG", "png"), (" Webp ", "webp"), ("jpeg", "jpeg"), ("JPG", "jpeg")],
)
def test_format_names_accept_common_spellings(spelled: str, expected: str) -> None:
    """Format names are case-insensitive and accept "jpg" for JPEG."""
    assert imaging.ImageFormat(spelled) == expected


def test_unknown_format_is_a_value_error() -> None:
    """An unsupported format (gif) is a ValueError, which callers report as bad input."""
    with pytest.raises(ValueError, match="gif"):
        imaging.encode(Image.new("RGB", (4, 4)), "gif")


@given(prompt=st.text(max_size=300), seed=st.integers(min_value=0, max_value=2**63 - 1))
@settings(max_examples=30, deadline=None)
def test_any_prompt_survives_every_format(prompt: str, seed: int) -> None:
    """Any prompt text (quotes, newlines, emoji, lone surrogates) and seed read back exactly
    from every format."""
    provenance = imaging.Provenance(prompt=prompt, seed=seed, model="m", ratio="1:1")
    for image_format in FORMATS:
        encoded = imaging.encode(Image.new("RGB", (8, 8)), image_format, provenance)
        found = imaging.read_provenance(encoded.data)
        assert (found["prompt"], found["seed"]) == (prompt, seed)
