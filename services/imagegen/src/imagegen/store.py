"""The image store: JetStream's object store `images`, one object per subtask name.

Objects are written in the object store's own format (chunks on `$O.images.C.<id>`, the
metadata on `$O.images.M.<name>` with a subject rollup), so every object-store reader --
GetImage, the fault checker, the CLI's export, `nats object get` -- reads them unchanged. The
write is leaner than nats-py's `ObjectStore.put`, which makes three requests one after the
other per object (look up the older version, write the chunk, write the metadata):

- The chunks of a small object (one chunk, up to 128 KiB: thumbnails, and most images of
  fast providers) go on a subject derived from the name and the bytes' digest, with a
  subject rollup. Storing the same bytes again replaces them in place; two writers of the
  same name never share a subject unless their bytes are equal; and no lookup of an older
  version is needed to keep its chunks from piling up.
- All objects of a job are written together: their chunks in one round trip, then, once
  JetStream stored every chunk, their metadata in a second one. Metadata never points to
  chunks that were not stored.
- A job that may be replacing an earlier version with other bytes (a redelivery, a retried
  attempt, a re-published job) still looks the older version up first and purges its
  chunks afterwards, as `ObjectStore.put` does; so does an object of several chunks, whose
  chunks go on a fresh random subject.

Names are fixed per subtask (see `jobspec.object_name`), so storing again after a retry
or a redelivery replaces the object instead of adding one.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import json
import secrets
from collections.abc import Sequence

from nats.js import JetStreamContext, api
from nats.js import errors as js_errors
from nats.js.object_store import ObjectStore

from imagegen import imaging
from kiln.common import bus, pull

CHUNK_SIZE = 128 * 1024
"""nats-py's and the Go client's default chunk size."""
_WRITE_TIMEOUT = 10.0
_ROLLUP: dict[str, str] = {api.Header.ROLLUP.value: "sub"}

READ_TIMEOUT_SECONDS = 10.0
"""Longest wait for one stored image (a few MiB take milliseconds): an object the retention
is removing can have lost its chunks but not yet its metadata, and would be waited for
forever."""


class StoreFailed(Exception):
    """The object store did not take the image (a bus hiccup: worth retrying)."""


@dataclasses.dataclass(frozen=True)
class _Object:
    """One object to write: its name, bytes and where its chunks go."""

    name: str
    image: imaging.EncodedImage
    chunk_id: str
    chunks: list[bytes]


class ImageStore:
    """Writes encoded images (and thumbnails) under their names, and reads them back."""

    def __init__(self, js: JetStreamContext, store: ObjectStore) -> None:
        self._js = js
        self._store = store
        self._bucket = bus.IMAGES_STORE
        self._stream = f"OBJ_{bus.IMAGES_STORE}"

    @classmethod
    async def open(cls, js: JetStreamContext) -> ImageStore:
        """The store of an already provisioned bus."""
        return cls(js, await js.object_store(bus.IMAGES_STORE))

    async def put(
        self, name: str, image: imaging.EncodedImage, *, first_write: bool = False
    ) -> None:
        """Stores `image` as `name`, replacing any earlier version."""
        await self.put_all([(name, image)], first_write=first_write)

    async def put_all(
        self, objects: Sequence[tuple[str, imaging.EncodedImage]], *, first_write: bool = False
    ) -> None:
        """Stores each `image` as its `name`, replacing earlier versions; StoreFailed when
        any of them was not stored. `first_write` says no earlier version with other bytes
        can exist (the first delivery of a job's first publication), which spares the
        look-up of one."""
        planned = [self._plan(name, image) for name, image in objects]
        try:
            earlier = {}
            for item in planned:
                if not first_write or len(item.chunks) > 1:
                    earlier[item.name] = await self._chunk_id_of(item.name)
            await self._publish(
                [
                    (self._chunk_subject(item.chunk_id), chunk, _ROLLUP if i == 0 else {})
                    for item in planned
                    for i, chunk in enumerate(item.chunks)
                ]
            )
            await self._publish(
                [(self._meta_subject(item.name), self._meta(item), _ROLLUP) for item in planned]
            )
            for item in planned:
                old = earlier.get(item.name)
                if old and old != item.chunk_id:
                    await self._js.purge_stream(self._stream, subject=self._chunk_subject(old))
        except StoreFailed:
            raise
        except Exception as error:  # any failure of the bus or the store: retry the job
            raise StoreFailed(", ".join(name for name, _ in objects)) from error

    def _plan(self, name: str, image: imaging.EncodedImage) -> _Object:
        data = image.data
        chunks = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
        if len(chunks) <= 1:
            # Same name and same bytes, same subject: a repeat replaces itself.
            key = hashlib.sha256(f"{name}\x00{image.sha256}".encode()).hexdigest()[:32]
        else:
            key = secrets.token_hex(16)
        return _Object(name, image, key, chunks)

    async def _chunk_id_of(self, name: str) -> str | None:
        try:
            info = await self._store.get_info(name, show_deleted=True)
        except js_errors.ObjectNotFoundError:
            return None
        return info.nuid or None

    async def _publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
        if not messages:
            return
        stored = await pull.publish_all(self._js, messages, _WRITE_TIMEOUT)
        if not all(stored):
            raise StoreFailed(f"{stored.count(False)} of {len(stored)} writes not stored")

    def _chunk_subject(self, chunk_id: str) -> str:
        return f"$O.{self._bucket}.C.{chunk_id}"

    def _meta_subject(self, name: str) -> str:
        encoded = base64.urlsafe_b64encode(name.encode()).decode()
        return f"$O.{self._bucket}.M.{encoded}"

    def _meta(self, item: _Object) -> bytes:
        """The metadata message, in the object store's JSON form (`ObjectInfo`)."""
        digest = base64.urlsafe_b64encode(bytes.fromhex(item.image.sha256)).decode()
        info = {
            "name": item.name,
            "bucket": self._bucket,
            "nuid": item.chunk_id,
            "size": len(item.image.data),
            "mtime": datetime.datetime.now(datetime.UTC).isoformat(),
            "chunks": len(item.chunks),
            "digest": f"SHA-256={digest}",
            "description": item.image.content_type,
            "options": {"max_chunk_size": CHUNK_SIZE},
        }
        return json.dumps(info).encode()

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
