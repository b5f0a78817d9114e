"""The image store: JetStream's object store `images`, one object per subtask name.

Names are fixed per subtask (see `jobspec.object_name`), so storing again after a retry
or a redelivery replaces the object (the old chunks are purged) instead of adding one.
"""

from __future__ import annotations

from nats.js import JetStreamContext, api
from nats.js.object_store import ObjectStore

from imagegen import imaging
from kiln.common import bus


class StoreFailed(Exception):
    """The object store did not take the image (a bus hiccup: worth retrying)."""


class ImageStore:
    """Writes encoded images (and thumbnails) under their names."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    @classmethod
    async def open(cls, js: JetStreamContext) -> ImageStore:
        """The store of an already provisioned bus."""
        return cls(await js.object_store(bus.IMAGES_STORE))

    async def put(self, name: str, image: imaging.EncodedImage) -> None:
        """Stores `image` as `name`, replacing any earlier version."""
        meta = api.ObjectMeta(name=name, description=image.content_type)
        try:
            await self._store.put(name, image.data, meta=meta)
        except Exception as error:  # any failure of the bus or the store: retry the job
            raise StoreFailed(name) from error
