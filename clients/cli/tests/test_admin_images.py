"""`kiln-admin export-images` and `import-images` round-trip the NATS image store through a
tar file or a directory, against a real NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
import pytest
from nats.js import api

from kiln.cli import admin, image_archive
from kiln.common import bus
from kiln.common.testing import NatsServer

IMAGES = {
    "tasks/t1/s1.png": (b"\x89PNG one", "image/png"),
    "tasks/t1/s1.thumb.webp": (b"RIFF thumb", "image/webp"),
    "tasks/t2/s2.jpeg": (bytes(range(256)) * 300, "image/jpeg"),  # several chunks
}


async def _reset_store(url: str, images: dict[str, tuple[bytes, str]]) -> None:
    """An `images` store holding exactly `images`."""
    connection = await nats.connect(url)
    js = connection.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_object_store(bus.IMAGES_STORE)
    store = await js.create_object_store(bus.IMAGES_STORE)
    for name, (data, content_type) in images.items():
        await store.put(name, data, meta=api.ObjectMeta(name=name, description=content_type))
    await connection.close()


async def _contents(url: str) -> dict[str, tuple[bytes, str]]:
    connection = await nats.connect(url)
    store = await connection.jetstream().object_store(bus.IMAGES_STORE)
    try:
        infos = [i for i in await store.list() if not i.deleted]
    except nats.js.errors.NotFoundError:
        infos = []
    result = {}
    for info in infos:
        result[info.name] = ((await store.get(info.name)).data or b"", info.description or "")
    await connection.close()
    return result


@pytest.mark.parametrize("archive", ["images.tar.gz", "images-dir"])
def test_export_then_import_restores_every_image(
    private_nats: NatsServer, tmp_path: Path, archive: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exporting the store and importing the archive into an emptied store brings back every
    object with its bytes and content type; importing again changes nothing."""
    assert image_archive.IMAGES_STORE == bus.IMAGES_STORE
    url, target = private_nats.url, tmp_path / archive
    asyncio.run(_reset_store(url, IMAGES))
    admin.main(["export-images", str(target), "--nats-url", url])
    assert "exported 3 images" in capsys.readouterr().out

    asyncio.run(_reset_store(url, {}))
    assert asyncio.run(_contents(url)) == {}
    admin.main(["import-images", str(target), "--nats-url", url])
    assert "imported 3 images" in capsys.readouterr().out
    assert asyncio.run(_contents(url)) == IMAGES
    admin.main(["import-images", str(target), "--nats-url", url])
    assert asyncio.run(_contents(url)) == IMAGES


def test_import_refuses_a_damaged_archive(private_nats: NatsServer, tmp_path: Path) -> None:
    """A file that does not match its checksum in index.json stops the import before any
    object is written, with a one-line error and exit code 1."""
    url, target = private_nats.url, tmp_path / "dir"
    asyncio.run(_reset_store(url, IMAGES))
    admin.main(["export-images", str(target), "--nats-url", url])
    (target / "tasks" / "t2" / "s2.jpeg").write_bytes(b"truncated")
    asyncio.run(_reset_store(url, {}))
    with pytest.raises(SystemExit) as exit_info:
        admin.main(["import-images", str(target), "--nats-url", url])
    assert exit_info.value.code == 1
    assert asyncio.run(_contents(url)) == {}


def test_export_of_an_empty_store_writes_an_empty_index(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """An empty store exports as an archive with an empty index.json, which imports as 0."""
    url = private_nats.url
    asyncio.run(_reset_store(url, {}))
    assert image_archive.run(image_archive.export_images(url, tmp_path / "empty.tar")) == 0
    assert image_archive.run(image_archive.import_images(url, tmp_path / "empty.tar")) == 0
