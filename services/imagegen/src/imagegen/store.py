"""The image store: JetStream's object store `images`, one object per subtask name.

Names are fixed per subtask (see `jobspec.object_name`), so storing again after a retry
or a redelivery replaces the object (the old chunks are purged) instead of adding one.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext, api
from nats.js import errors as js_errors
from nats.js.object_store import ObjectStore

from imagegen import imaging
from kiln.common import bus

READ_TIMEOUT_SECONDS = 10.0
"""Longest wait for one stored image (a few MiB take milliseconds): an object the retention
is removing can have lost its chunks but not yet its metadata, and would be waited for
forever."""


class StoreFailed(Exception):
    """The object store did not take the image (a bus hiccup: worth retrying)."""


class ImageStore:
    """Writes encoded images (and thumbnails) under their names, and reads them back."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    @classmethod
    async def open(cls, js: JetStreamContext) -> ImageStore:
        """The store of an already provisioned bus."""
        return cls(await js.object_store(bus.IMAGES_STORE))

    async def put(self, name: str, image: imaging.EncodedImage) -> None:
        """Stores `image` as `name`, replacing any earlier version."""
        await self.put_bytes(name, image.data, image.content_type)

    async def put_bytes(self, name: str, data: bytes, content_type: str) -> None:
        """Stores `data` as `name`, replacing any earlier version."""
        meta = api.ObjectMeta(name=name, description=content_type)
        try:
            await self._store.put(name, data, meta=meta)
        except Exception as error:  # any failure of the bus or the store: retry the job
            raise StoreFailed(name) from error

    async def get(self, name: str) -> bytes | None:
        """The bytes stored as `name`; None when the object is gone (removed by the
        retention, or never stored). Other bus failures raise."""
        try:
            found = await asyncio.wait_for(self._store.get(name), READ_TIMEOUT_SECONDS)
        except (js_errors.ObjectNotFoundError, js_errors.DigestMismatchError, TimeoutError):
            return None
        return bytes(found.data or b"")
