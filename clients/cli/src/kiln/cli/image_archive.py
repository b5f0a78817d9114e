"""`kiln-admin export-images` / `import-images`: the JetStream object store `images` (every
generated image and thumbnail) to and from a directory or a tar file.

The database backup (`kiln-admin backup`) holds the tasks; this holds their images, which
live only in NATS. An archive has one file per object under its object name
(tasks/<task id>/<subtask id>.<format>) and `index.json` with each object's content type,
size and SHA-256, so an import can check what it reads and restore the metadata. Importing
replaces objects of the same name and leaves the others alone, so it can be repeated.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import nats
from nats.js import api
from nats.js import errors as js_errors

IMAGES_STORE = "images"  # kiln.common.bus.IMAGES_STORE (the CLI does not depend on kiln-common)
INDEX = "index.json"


class ArchiveError(Exception):
    """A problem with the archive or the store, reported in one line."""


def _is_tar(path: Path) -> bool:
    return path.name.endswith((".tar", ".tar.gz", ".tgz"))


def _safe_name(name: str) -> PurePosixPath:
    """`name` as a relative path that stays inside the archive (object names are ours, but
    an archive may come from anywhere)."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name == INDEX:
        raise ArchiveError(f"refusing object name {name!r}")
    return path


async def export_images(nats_url: str, target: Path) -> int:
    """Writes every object of the store to `target` (a directory, or a tar file when its
    name ends in .tar/.tar.gz/.tgz); returns how many."""
    connection = await nats.connect(nats_url, allow_reconnect=False)
    try:
        store = await connection.jetstream().object_store(IMAGES_STORE)
        try:
            infos = [i for i in await store.list() if not i.deleted]
        except js_errors.NotFoundError:
            infos = []  # an empty store lists as "not found"
        index: dict[str, dict[str, Any]] = {}
        with _Writer(target) as writer:
            for info in infos:
                data = (await store.get(info.name)).data or b""
                writer.add(_safe_name(info.name), data)
                index[info.name] = {
                    "content_type": info.description or "",
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            writer.add(PurePosixPath(INDEX), json.dumps(index, indent=1, sort_keys=True).encode())
        return len(index)
    finally:
        await connection.close()


async def import_images(nats_url: str, source: Path) -> int:
    """Puts every object of the archive `source` into the store, checking each file's size
    and SHA-256 against the index first; returns how many."""
    entries = list(_read(source))
    files = dict(entries)
    if INDEX not in files:
        raise ArchiveError(f"{source} has no {INDEX}: not an image archive")
    index: dict[str, dict[str, Any]] = json.loads(files[INDEX])
    for name, meta in index.items():
        data = files.get(str(_safe_name(name)))
        if data is None:
            raise ArchiveError(f"{source}: {name} is in {INDEX} but missing")
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ArchiveError(f"{source}: {name} does not match its checksum")
    connection = await nats.connect(nats_url, allow_reconnect=False)
    try:
        store = await connection.jetstream().object_store(IMAGES_STORE)
        for name, meta in sorted(index.items()):
            await store.put(
                name, files[name], meta=api.ObjectMeta(name=name, description=meta["content_type"])
            )
        return len(index)
    finally:
        await connection.close()


class _Writer:
    """Adds files to a directory or a tar file."""

    def __init__(self, target: Path) -> None:
        self._target = target
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> _Writer:
        if _is_tar(self._target):
            self._target.parent.mkdir(parents=True, exist_ok=True)
            # Closed in __exit__.
            if self._target.name.endswith(("gz", "tgz")):
                self._tar = tarfile.open(self._target, "w:gz")
            else:
                self._tar = tarfile.open(self._target, "w")
        else:
            self._target.mkdir(parents=True, exist_ok=True)
        return self

    def add(self, name: PurePosixPath, data: bytes) -> None:
        if self._tar is not None:
            member = tarfile.TarInfo(str(name))
            member.size = len(data)
            self._tar.addfile(member, io.BytesIO(data))
            return
        path = self._target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def __exit__(self, *_exc: object) -> None:
        if self._tar is not None:
            self._tar.close()


def _read(source: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file in a directory or tar archive."""
    if not source.exists():
        raise ArchiveError(f"no such archive: {source}")
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file():
                yield path.relative_to(source).as_posix(), path.read_bytes()
        return
    try:
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        yield member.name, extracted.read()
    except tarfile.TarError as error:
        raise ArchiveError(f"{source} is not a tar archive: {error}") from None


def run(coroutine: Any) -> int:
    """Runs an export or import; connection failures become one-line ArchiveErrors."""
    try:
        result: int = asyncio.run(coroutine)
    except (OSError, nats.errors.Error, js_errors.Error) as error:
        raise ArchiveError(f"NATS: {error or type(error).__name__}") from None
    return result
