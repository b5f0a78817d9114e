"""Reused results: serving a job with a copy of an already stored image of the same inputs.

A job's render key is a SHA-256 over a version tag and what decides the stored file: the
prompt after polishing (the shared polish cache makes it the same for every worker), the
negative prompt, seed, width, height, ratio (recorded in the file's provenance), format and
the provider's identity (kind, non-secret options, model). The `render_index` bucket maps a
scope and a render key to the stored image:

- `owner.<hash of the owner id>.<render key>`, written for jobs of tasks with
  `reuse_results` or `share_results`, is found by the same owner's reusing tasks;
- `shared.<render key>`, written only for tasks with `share_results`, is found by every
  owner's reusing tasks. Nothing else crosses owners.

A hit is copied into the job's own object names rather than referenced: the copy keeps its
own retention clock (it lives as long as an image rendered now would), and expiring or
deleting the source never breaks the task that reused it. An entry whose image is gone
(expired, removed at the store's size limit) counts as a miss: the job renders, and its new
image takes the entry over. The index is a cache: when it fails, the job renders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from imagegen import metrics, shared_polish
from imagegen.store import ImageStore
from kiln.common import bus
from kiln.imagegen.v1 import jobs_pb2

log = structlog.get_logger("imagegen.reuse")

KEY_VERSION = "kiln-render-v1"
"""Changes whenever the same inputs would produce a different file (encoder settings, the
provenance layout), so old images stop matching."""

SHARED_SCOPE = "shared"


def provider_identity(kind: str, options: Mapping[str, object], model: str) -> str:
    """What makes two providers' pictures comparable: kind, non-secret options, model."""
    return f"{shared_polish.namespace(kind, dict(options))}\0{model}"


@dataclasses.dataclass(frozen=True)
class RenderInputs:
    """Everything that decides a stored image's bytes."""

    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    ratio: str
    image_format: int
    provider: str

    def key(self) -> str:
        """The render key: hex SHA-256 of the versioned, canonical inputs."""
        canonical = json.dumps([KEY_VERSION, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """An index entry: where an image of some render key is stored, and whose it is."""

    subtask_id: str
    object_name: str
    thumbnail_object_name: str
    width: int
    height: int

    def encode(self) -> bytes:
        """The entry's value in the bucket."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> StoredImage | None:
        """The entry in `data`; None when it is not one (a newer layout, a damaged value)."""
        try:
            fields = json.loads(data)
            return cls(**fields) if isinstance(fields, dict) else None
        except (ValueError, TypeError):
            return None


@dataclasses.dataclass(frozen=True)
class Found:
    """A stored image of the same render key, read back, ready to copy."""

    source: StoredImage
    image: bytes
    thumbnail: bytes


def owner_scope(owner_id: str) -> str:
    """The index scope of one owner (hashed: an owner id may hold any character)."""
    return "owner." + hashlib.sha256(owner_id.encode()).hexdigest()[:32]


class ResultIndex:
    """Looks up and records stored images by render key, and reads hits back."""

    def __init__(self, kv: KeyValue, images: ImageStore, providers: Mapping[str, str]) -> None:
        self._kv = kv
        self._images = images
        self._providers = dict(providers)

    @classmethod
    async def open(
        cls, js: JetStreamContext, images: ImageStore, providers: Mapping[str, str]
    ) -> ResultIndex:
        """The index of an already provisioned bus; `providers` maps each served queue to
        its `provider_identity`."""
        return cls(await js.key_value(bus.RENDER_INDEX_BUCKET), images, providers)

    def render_key(self, job: jobs_pb2.Job, queue: str, prompt: str) -> str:
        """The render key of `job` rendered on `queue` with `prompt` (after polishing)."""
        return RenderInputs(
            prompt=prompt,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            width=job.width,
            height=job.height,
            ratio=job.ratio,
            image_format=job.format,
            provider=self._providers[queue],
        ).key()

    async def find(self, job: jobs_pb2.Job, queue: str, key: str) -> Found | None:
        """A stored image of `key` that `job`'s owner may reuse (their own first, then a
        shared one) and that is still stored; None otherwise."""
        outcome = "miss"
        for scope in (owner_scope(job.owner_id), SHARED_SCOPE):
            entry = await self._entry(f"{scope}.{key}")
            if entry is None or entry.subtask_id == job.subtask_id:
                continue
            found = await self._read(entry)
            if found is not None:
                metrics.REUSE_LOOKUPS.labels(queue=queue, outcome="hit").inc()
                return found
            outcome = "gone"
        metrics.REUSE_LOOKUPS.labels(queue=queue, outcome=outcome).inc()
        return None

    async def record(self, job: jobs_pb2.Job, key: str, stored: StoredImage) -> None:
        """Notes `stored` as the image of `key` for its owner, and for everyone when the
        job's task shares its results. A failure is logged: the next job renders."""
        scopes = [owner_scope(job.owner_id)]
        if job.share_results:
            scopes.append(SHARED_SCOPE)
        for scope in scopes:
            try:
                await self._kv.put(f"{scope}.{key}", stored.encode())
            except Exception as error:  # a cache: never fail the job for it
                log.warning("render_index_unavailable", op="put", error=type(error).__name__)
                return

    async def _entry(self, name: str) -> StoredImage | None:
        try:
            entry = await self._kv.get(name)
        except nats.js.errors.KeyNotFoundError:
            return None
        except Exception as error:  # a cache miss, not a failure
            log.warning("render_index_unavailable", op="get", error=type(error).__name__)
            return None
        return StoredImage.decode(entry.value or b"")

    async def _read(self, entry: StoredImage) -> Found | None:
        try:
            image = await self._images.get(entry.object_name)
            thumbnail = await self._images.get(entry.thumbnail_object_name)
        except Exception as error:  # unreadable now: render instead
            log.warning("reuse_read_failed", error=type(error).__name__)
            return None
        if not image or not thumbnail:
            return None
        return Found(entry, image, thumbnail)
