"""GetImage: a subtask's stored image (or thumbnail), metadata first, then chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js import errors as js_errors

from kiln.common import bus, errors
from tasks import model, service

CHUNK = 1024 * 1024
READ_TIMEOUT_SECONDS = 30.0
"""Longest wait for one image from the object store (a few MiB take milliseconds)."""


class ImageExpired(errors.FailedPrecondition):
    """The subtask succeeded, but its image is no longer stored: the image retention
    (IMAGES_MAX_AGE_SECONDS, IMAGES_MAX_BYTES) removed it."""

    reason = "IMAGE_EXPIRED"

    def __init__(self, subtask_id: str) -> None:
        super().__init__(
            f"the image of subtask {subtask_id!r} is no longer stored: images are removed "
            "after IMAGES_MAX_AGE_SECONDS, or earlier when the store reaches IMAGES_MAX_BYTES",
            metadata={"subtask_id": subtask_id},
        )


async def read_image(
    tasks: service.Tasks, js: JetStreamContext, subtask_id: str, thumbnail: bool
) -> tuple[model.Subtask, str, bytes]:
    """The subtask, the content type and the bytes of its image or thumbnail."""
    subtask = await tasks.visible_subtask(subtask_id)
    name = subtask.thumbnail_object_name if thumbnail else subtask.object_name
    if subtask.state != model.SUCCEEDED or not name:
        raise errors.FailedPrecondition(
            f"subtask {subtask.id!r} has no {'thumbnail' if thumbnail else 'image'} "
            f"(it is {subtask.state})",
            reason="NO_IMAGE",
        )
    store = await js.object_store(bus.IMAGES_STORE)
    try:
        # An image the retention is removing can have lost its chunks but not yet its
        # metadata; reading it would wait forever for the missing chunks.
        found = await asyncio.wait_for(store.get(name), READ_TIMEOUT_SECONDS)
    except (js_errors.ObjectNotFoundError, js_errors.DigestMismatchError, TimeoutError):
        raise ImageExpired(subtask.id) from None
    data = found.data or b""
    content_type = "image/webp" if thumbnail else (subtask.content_type or "")
    return subtask, content_type, data


def chunks(data: bytes) -> AsyncIterator[bytes]:
    """`data` in pieces of at most 1 MiB."""

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    return pieces()
