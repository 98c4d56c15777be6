"""Item images and thumbnails: served from inside the image roots only, never anything else.

Real files (synthetic scenes rendered by ``indexer.synthetic``), a real node, the real app.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from elasticsearch import Elasticsearch
from PIL import Image
from pydantic import SecretStr

from api.app import create_app
from api.errors import ApiError
from api.images import ThumbnailCache, local_path, sniff
from api.settings import Settings
from indexer.synthetic.world import render_scene
from store.image_roots import record_image_roots
from tests.api.conftest import READ_KEY, client_for, error_of, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]


def scene_png(path: Path, index: int = 0) -> bytes:
    image, _ = render_scene(7, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path.read_bytes()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A root with images, an image outside it, and the tricks that must not get out."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    scene_png(root / "a" / "scene.png")
    scene_png(outside / "secret.png", 1)
    (root / "a" / "link-out.png").symlink_to(outside / "secret.png")
    (root / "a" / "link-in.png").symlink_to(root / "a" / "scene.png")
    (root / "dir-link").symlink_to(outside, target_is_directory=True)
    (root / "notes.png").write_text("not an image, whatever the name says\n")
    image, _ = render_scene(7, 2)
    image.save(root / "scan.tiff", format="TIFF")
    image.save(root / "photo.jpg", format="JPEG")
    (root / "page.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>')
    return {"root": root, "outside": outside}


def items(files: dict[str, Path]) -> list[dict[str, Any]]:
    root = files["root"]
    uris = {
        "plain": str(root / "a" / "scene.png"),
        "file-uri": (root / "a" / "scene.png").as_uri(),
        "quoted-uri": "file://" + str(root / "a" / "scene.png").replace("/a/", "/%61/"),
        "link-in": str(root / "a" / "link-in.png"),
        "jpeg": str(root / "photo.jpg"),
        "tiff": str(root / "scan.tiff"),
        "passwd": "/etc/passwd",
        "passwd-uri": "file:///etc/passwd",
        "dotdot": f"{root}/a/../../outside/secret.png",
        "dotdot-uri": f"file://{root}/a/%2E%2E/%2E%2E/outside/secret.png",
        "link-out": str(root / "a" / "link-out.png"),
        "dir-link": str(root / "dir-link" / "secret.png"),
        "missing": str(root / "a" / "gone.png"),
        "not-image": str(root / "notes.png"),
        "svg": str(root / "page.svg"),
        "folder": str(root / "a"),
        "s3": "s3://bucket/key.png",
        "http": "http://example.com/a.png",
        "relative": "a/scene.png",
        "other-host": "file://server/share/a.png",
    }
    return [
        {"item_id": name, "uri": uri, "width": 192, "height": 128} for name, uri in uris.items()
    ] + [{"item_id": "no-uri"}]


@pytest.fixture
async def image_client(
    es_url: str, es: Elasticsearch, item_index: str, files: dict[str, Path], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    seed(es, item_index, items(files))
    settings = Settings(
        es_url=es_url,
        index=item_index,
        image_roots=str(files["root"]),
        cache=tmp_path / "cache",
    )
    async with client_for(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("item", ["plain", "file-uri", "quoted-uri", "link-in"])
async def test_files_inside_a_root_are_served_as_stored(
    image_client: httpx.AsyncClient, files: dict[str, Path], item: str
) -> None:
    response = await image_client.get(f"/v1/items/{item}/image")
    assert response.status_code == 200, response.text
    assert response.content == (files["root"] / "a" / "scene.png").read_bytes()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"].startswith("private")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    ("item", "status", "code"),
    [
        ("passwd", 403, "image_outside_roots"),
        ("passwd-uri", 403, "image_outside_roots"),
        ("dotdot", 403, "image_outside_roots"),
        ("dotdot-uri", 403, "image_outside_roots"),
        ("link-out", 403, "image_outside_roots"),
        ("dir-link", 403, "image_outside_roots"),
        ("missing", 404, "image_not_found"),
        ("folder", 404, "image_not_found"),
        ("not-image", 415, "not_an_image"),
        ("svg", 415, "not_an_image"),
        ("s3", 404, "image_not_served"),
        ("http", 404, "image_not_served"),
        ("relative", 404, "image_not_served"),
        ("other-host", 404, "image_not_served"),
        ("no-uri", 404, "image_not_served"),
        ("nobody", 404, "item_not_found"),
    ],
)
@pytest.mark.parametrize("endpoint", ["image", "thumbnail"])
async def test_everything_else_gets_the_envelope_never_the_bytes(
    image_client: httpx.AsyncClient,
    files: dict[str, Path],
    item: str,
    status: int,
    code: str,
    endpoint: str,
) -> None:
    response = await image_client.get(f"/v1/items/{item}/{endpoint}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert error_of(response)["code"] == code
    secret = (files["outside"] / "secret.png").read_bytes()
    assert secret[:64] not in response.content
    assert b"root:" not in response.content
    # The refusal names no server path beyond what the client already knows.
    assert str(files["outside"]) not in response.text


async def test_other_schemes_say_which_and_that_they_are_not_served(
    image_client: httpx.AsyncClient,
) -> None:
    error = error_of(await image_client.get("/v1/items/s3/image"))
    assert error["details"]["scheme"] == "s3"
    assert "s3:// images are not served" in error["message"]


async def test_jpeg_as_stored_and_tiff_converted_to_png(
    image_client: httpx.AsyncClient, files: dict[str, Path]
) -> None:
    jpeg = await image_client.get("/v1/items/jpeg/image")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content == (files["root"] / "photo.jpg").read_bytes()
    tiff = await image_client.get("/v1/items/tiff/image")
    assert tiff.status_code == 200
    assert tiff.headers["content-type"] == "image/png"
    converted = Image.open(io.BytesIO(tiff.content))
    original = Image.open(files["root"] / "scan.tiff")
    assert converted.size == original.size
    assert np.array_equal(np.asarray(converted.convert("RGB")), np.asarray(original.convert("RGB")))


async def test_etag_revalidates_and_changes_with_the_file(
    image_client: httpx.AsyncClient, files: dict[str, Path]
) -> None:
    first = await image_client.get("/v1/items/plain/image")
    etag = first.headers["etag"]
    again = await image_client.get("/v1/items/plain/image", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    thumb = await image_client.get("/v1/items/plain/thumbnail")
    assert thumb.headers["etag"] != etag  # one tag per representation
    # A new file under the same name: new tag, new bytes.
    path = files["root"] / "a" / "scene.png"
    scene_png(path, 5)
    os.utime(path, ns=(1, 1))
    changed = await image_client.get("/v1/items/plain/image", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.content == path.read_bytes()


async def test_thumbnails_are_small_jpegs_cached_on_disk(
    image_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await image_client.get("/v1/items/plain/thumbnail", params={"size": 100})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.format == "JPEG"
    assert thumb.size == (128, 85)  # 192x128 fitted into the 128 bucket, aspect kept
    cached = list((tmp_path / "cache" / "thumbnails").glob("*/*-128.jpg"))
    assert len(cached) == 1
    assert cached[0].read_bytes() == response.content
    # Served from the cache: a marker written into the cached file comes back.
    cached[0].write_bytes(response.content + b"cached")
    again = await image_client.get("/v1/items/plain/thumbnail", params={"size": 128})
    assert again.content.endswith(b"cached")
    big = await image_client.get("/v1/items/plain/thumbnail", params={"size": 1024})
    assert Image.open(io.BytesIO(big.content)).size == (192, 128)  # never enlarged
    bad = await image_client.get("/v1/items/plain/thumbnail", params={"size": 5000})
    assert bad.status_code == 422


async def test_roots_recorded_on_the_index_are_served(
    es_url: str, es: Elasticsearch, item_index: str, files: dict[str, Path], tmp_path: Path
) -> None:
    seed(es, item_index, items(files))
    settings = Settings(es_url=es_url, index=item_index, cache=tmp_path / "cache")
    async with client_for(create_app(settings)) as client:
        before = await client.get("/v1/items/plain/image")
        assert before.status_code == 403
        # Recorded while the API runs (as `autotag index` does): served without a restart.
        record_image_roots(es, item_index, [files["root"] / "a"])
        await anyio.sleep(1.05)  # a refused path re-reads the roots at most once a second
        after = await client.get("/v1/items/plain/image")
        assert after.status_code == 200, after.text
        # Only that folder: its parent is still closed.
        assert (await client.get("/v1/items/jpeg/image")).status_code == 403


async def test_reads_need_a_key_when_reads_are_closed(
    es_url: str, es: Elasticsearch, item_index: str, files: dict[str, Path], tmp_path: Path
) -> None:
    seed(es, item_index, items(files))
    settings = Settings(
        es_url=es_url,
        index=item_index,
        image_roots=str(files["root"]),
        cache=tmp_path / "cache",
        open_reads=False,
        read_api_keys=SecretStr(READ_KEY),
    )
    async with client_for(create_app(settings)) as client:
        assert (await client.get("/v1/items/plain/thumbnail")).status_code == 401
        keyed = await client.get("/v1/items/plain/thumbnail", headers={"X-API-Key": READ_KEY})
        assert keyed.status_code == 200


def test_sniffing_knows_raster_formats_only() -> None:
    assert sniff(b"\x89PNG\r\n\x1a\n....") == ("png", "image/png", True)
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("webp", "image/webp", True)
    assert sniff(b"\xff\xd8\xff\xe0") == ("jpeg", "image/jpeg", True)
    for text in (b"<svg", b"<?xml", b"root:x:0:0", b"%PDF-1.7", b"", b"<html>"):
        assert sniff(text) is None, text


def test_local_path_reads_paths_and_file_uris_only() -> None:
    assert local_path("i", "/data/a b.png") == "/data/a b.png"
    assert local_path("i", "file:///data/a%20b.png") == "/data/a b.png"
    assert local_path("i", "file://localhost/data/x.png") == "/data/x.png"
    for uri in ("s3://b/k", "https://x/y.png", "data/x.png", "C:\\x.png", "file:///a\x00b"):
        with pytest.raises(ApiError):
            local_path("i", uri)


def test_thumbnail_cache_stays_under_its_bound(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path, limit_bytes=10_000)
    for n in range(30):
        cache.put(f"{n:04x}aaaa", 256, bytes(1000))
        path = tmp_path / f"{n:04x}"[:2] / f"{n:04x}aaaa-256.jpg"
        os.utime(path, (n, n))  # written in order, oldest first
    assert cache.total_bytes() <= 10_000
    # The newest are kept, the oldest went.
    assert cache.get(f"{29:04x}aaaa", 256) is not None
    assert cache.get(f"{0:04x}aaaa", 256) is None
    ThumbnailCache(tmp_path / "off", limit_bytes=0).put("k", 256, b"x")
    assert not (tmp_path / "off").exists()
