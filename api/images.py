"""Item images and their thumbnails, served only from inside the image roots.

An item's ``uri`` names its image. Only local files are served (an absolute path or a
``file://`` URI); any other scheme (``s3://``, ``http://``) is answered "not served", never
fetched. The file is served only when its real path, every symlink resolved, lies inside an
image root: a folder of ``AUTOTAG_IMAGE_ROOTS`` or one ``autotag index`` recorded for the index
(:mod:`store.image_roots`, read again at most every ``ROOTS_TTL_S`` seconds). So a stored uri
of ``/etc/passwd``, a ``..`` or a symlink leading out of a root is refused (403) before the
file is even looked at; what is opened is checked again through ``/proc/self/fd`` (a symlink
swapped in between cannot redirect it), must be a regular file, and must sniff as a raster
image. Browsers get PNG, JPEG, GIF, WebP and BMP as stored; TIFF and PNM are converted to PNG.

Thumbnails are JPEGs at most ``size`` pixels on their long side, made once and kept on disk
under ``<cache>/thumbnails``, keyed by the file's real path, size, modification time and inode
(a changed file gets a new thumbnail), and bounded in size: the least recently used go first.
ETags are those keys; answers carry ``Cache-Control: private`` (reads may need a key).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import elasticsearch
from elasticsearch import AsyncElasticsearch
from PIL import Image

from api.errors import ApiError
from api.review import load_item
from store import schema as f
from store.image_roots import is_inside, roots_in_answer, roots_index_name, roots_search_body

THUMBNAIL_SIZES: Final = (128, 256, 512, 1024)
DEFAULT_THUMBNAIL_SIZE: Final = 256
CACHE_CONTROL: Final = "private, max-age=300"
# Larger images are refused rather than decoded (the indexer's own limit).
MAX_PIXELS: Final = 64_000_000
MAX_BYTES: Final = 256 * 1024 * 1024
ROOTS_TTL_S: Final = 10.0
_THUMBNAIL_QUALITY: Final = 85
_FORMAT_VERSION: Final = "1"

# (magic bytes at offset 0, format, content type, browsers show it as stored)
_SIGNATURES: Final[tuple[tuple[bytes, str, str, bool], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "png", "image/png", True),
    (b"\xff\xd8\xff", "jpeg", "image/jpeg", True),
    (b"GIF87a", "gif", "image/gif", True),
    (b"GIF89a", "gif", "image/gif", True),
    (b"BM", "bmp", "image/bmp", True),
    (b"II*\x00", "tiff", "image/tiff", False),
    (b"MM\x00*", "tiff", "image/tiff", False),
    (b"P5", "pnm", "image/x-portable-graymap", False),
    (b"P6", "pnm", "image/x-portable-pixmap", False),
)


def sniff(head: bytes) -> tuple[str, str, bool] | None:
    """(format, content type, shown as stored) from a file's first bytes; None: not raster."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", "image/webp", True
    for magic, name, content_type, as_stored in _SIGNATURES:
        if head.startswith(magic):
            return name, content_type, as_stored
    return None


def not_served(item_id: str, reason: str, scheme: str | None = None) -> ApiError:
    details: dict[str, Any] = {"item_id": item_id, "reason": reason}
    if scheme is not None:
        details["scheme"] = scheme
    message = f"This API does not serve this image: {reason}"
    return ApiError(404, "image_not_served", message, details)


def local_path(item_id: str, uri: str | None) -> str:
    """The local file an item's ``uri`` names, or :class:`ApiError` saying why none is served."""
    if not uri:
        raise not_served(item_id, "the item has no uri")
    if uri.startswith("/"):
        path = uri
    else:
        parts = urlsplit(uri)
        if not parts.scheme or len(parts.scheme) == 1:  # a relative path, or C:\...
            raise not_served(item_id, "the uri is not an absolute path")
        if parts.scheme.lower() != "file":
            raise not_served(
                item_id, f"{parts.scheme}:// images are not served, only local files", parts.scheme
            )
        if parts.netloc not in ("", "localhost"):
            raise not_served(item_id, "file:// uri on another host", "file")
        path = unquote(parts.path)
    if "\x00" in path or not path.startswith("/"):
        raise not_served(item_id, "the uri is not an absolute path")
    return path


@dataclass(frozen=True, slots=True)
class OpenedImage:
    """A regular file inside a root, opened, with what is needed to serve and cache it."""

    fd: int
    path: str
    size: int
    mtime_ns: int
    format: str
    content_type: str
    as_stored: bool
    key: str

    def close(self) -> None:
        os.close(self.fd)


def _outside(item_id: str) -> ApiError:
    return ApiError(
        403,
        "image_outside_roots",
        "The item's image is not inside a folder this API serves images from",
        {"item_id": item_id},
    )


def _missing(item_id: str) -> ApiError:
    message = "The item's image file does not exist"
    return ApiError(404, "image_not_found", message, {"item_id": item_id})


def open_inside(item_id: str, path: str, roots: Sequence[str]) -> OpenedImage:
    """Open ``path`` if its real path lies inside one of ``roots`` (already resolved).

    Blocking (file system calls): run it in a worker thread.
    """
    real = os.path.realpath(path)
    if not any(is_inside(real, root) for root in roots):
        raise _outside(item_id)
    try:
        # O_NONBLOCK: a FIFO planted in a root must not hang the worker; O_NOFOLLOW: the last
        # component was resolved already, a symlink there now is a swap.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(item_id) from None
    except OSError:
        raise _outside(item_id) from None
    try:
        link = f"/proc/self/fd/{fd}"
        if os.path.exists(link) and os.readlink(link) != real:
            raise _outside(item_id)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _missing(item_id)
        if info.st_size > MAX_BYTES:
            raise ApiError(
                413, "image_too_large", "The image file is too large to serve", {"item_id": item_id}
            )
        sniffed = sniff(os.pread(fd, 16, 0))
        if sniffed is None:
            raise ApiError(
                415,
                "not_an_image",
                "The item's file is not a raster image",
                {"item_id": item_id},
            )
        key = hashlib.blake2b(
            f"{_FORMAT_VERSION}\0{real}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}".encode(),
            digest_size=12,
        ).hexdigest()
        return OpenedImage(fd, real, info.st_size, info.st_mtime_ns, *sniffed, key=key)
    except BaseException:
        os.close(fd)
        raise


def _decode(opened: OpenedImage, item_id: str, *, reduce_to: int | None = None) -> Image.Image:
    with os.fdopen(os.dup(opened.fd), "rb") as handle:
        handle.seek(0)
        try:
            image = Image.open(handle)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ApiError(
                    413, "image_too_large", "The image has too many pixels", {"item_id": item_id}
                )
            if reduce_to is not None:
                image.draft("RGB", (reduce_to, reduce_to))
            image.load()
        except ApiError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
            raise ApiError(
                415, "not_an_image", f"The image cannot be decoded: {exc}", {"item_id": item_id}
            ) from None
    return image


def read_original(opened: OpenedImage, item_id: str) -> tuple[bytes, str]:
    """The bytes to send for the full image and their content type (blocking)."""
    if opened.as_stored:
        chunks = []
        offset = 0
        while offset < opened.size:
            chunk = os.pread(opened.fd, min(1 << 20, opened.size - offset), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks), opened.content_type
    image = _decode(opened, item_id)
    out = io.BytesIO()
    _displayable(image).save(out, format="PNG")
    return out.getvalue(), "image/png"


def _displayable(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def make_thumbnail(opened: OpenedImage, item_id: str, size: int) -> bytes:
    """A JPEG at most ``size`` pixels on its long side (never enlarged); blocking."""
    image = _decode(opened, item_id, reduce_to=size)
    image = _displayable(image)
    image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=_THUMBNAIL_QUALITY)
    return out.getvalue()


class ThumbnailCache:
    """Thumbnails on disk, at most ``limit_bytes`` in all, least recently used evicted first.

    Files are written whole (a temporary file renamed into place), so a crash leaves no torn
    thumbnail. A hit refreshes the file's modification time, which orders eviction. The total
    is counted once, on first use, then kept up to date by this process.
    """

    def __init__(self, folder: Path, limit_bytes: int) -> None:
        self.folder = folder
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._total: int | None = None

    def _path(self, key: str, size: int) -> Path:
        return self.folder / key[:2] / f"{key}-{size}.jpg"

    def get(self, key: str, size: int) -> bytes | None:
        path = self._path(key, size)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def put(self, key: str, size: int, data: bytes) -> None:
        if self.limit_bytes <= 0 or len(data) > self.limit_bytes:
            return
        path = self._path(key, size)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, scratch = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            existed = path.exists()
            os.replace(scratch, path)
        except OSError:
            return  # a cache that cannot write only costs speed
        if not existed:
            with self._lock:
                self._total = self._scan() if self._total is None else self._total + len(data)
                if self._total > self.limit_bytes:
                    self._evict()

    def _files(self) -> list[tuple[float, int, Path]]:
        found = []
        for path in self.folder.glob("*/*.jpg"):
            try:
                info = path.stat()
            except OSError:
                continue
            found.append((info.st_mtime, info.st_size, path))
        return found

    def _scan(self) -> int:
        return sum(size for _, size, _ in self._files())

    def _evict(self) -> None:
        """Down to 90% of the limit, oldest first (called with the lock held)."""
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        target = self.limit_bytes * 0.9
        for _, size, path in files:
            if total <= target:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
        self._total = total

    def total_bytes(self) -> int:
        with self._lock:
            return self._scan()


class RecordedRoots:
    """The roots recorded on each index, read at most every ``ttl_s`` seconds per index.

    A path outside every known root asks again (``fresh``), at most once a second per index,
    so a folder indexed while the API runs is served at once, not ``ttl_s`` later.
    """

    def __init__(self, ttl_s: float = ROOTS_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, list[str]]] = {}

    async def get(self, es: AsyncElasticsearch, index: str, *, fresh: bool = False) -> list[str]:
        now = time.monotonic()
        read_at, roots = self._entries.get(index, (-1e9, []))
        age = now - read_at
        if age >= self.ttl_s or (fresh and age >= 1.0):
            try:
                answer = await es.search(index=roots_index_name(index), body=roots_search_body())
            except elasticsearch.NotFoundError:
                roots = []  # nothing recorded yet
            else:
                roots = roots_in_answer(answer.body)
            self._entries[index] = (now, roots)
        return roots


def resolved_roots(configured: Sequence[str], recorded: Sequence[str]) -> list[str]:
    return sorted({os.path.realpath(os.path.abspath(r)) for r in (*configured, *recorded)})


async def image_roots(
    recorded: RecordedRoots,
    es: AsyncElasticsearch,
    index: str,
    configured: Sequence[str],
    *,
    fresh: bool = False,
) -> list[str]:
    """Every folder images may be served from: configured ones and those recorded on ``index``."""
    return resolved_roots(configured, await recorded.get(es, index, fresh=fresh))


async def item_uri(es: AsyncElasticsearch, index: str, item_id: str) -> str | None:
    """The ``uri`` stored on an item; 404 when there is no such item."""
    stored = await load_item(es, index, item_id, source_includes=[f.URI])
    uri = stored.source.get(f.URI)
    return None if uri is None else str(uri)


@dataclass(frozen=True, slots=True)
class ImageService:
    """One process's image state: the recorded roots, the thumbnail cache, the decode slots."""

    recorded: RecordedRoots
    thumbnails: ThumbnailCache
    # Decoding is CPU work in threads: a few at a time keep the event loop and ES responsive.
    limiter: Any

    @classmethod
    def create(cls, cache_folder: Path, limit_bytes: int) -> ImageService:
        import anyio

        slots = max(2, min(8, os.cpu_count() or 2))
        cache = ThumbnailCache(cache_folder, limit_bytes)
        return cls(RecordedRoots(), cache, anyio.CapacityLimiter(slots))


def thumbnail_size(asked: int) -> int:
    """The cached size that serves a request for ``asked`` pixels (the next one up)."""
    for size in THUMBNAIL_SIZES:
        if asked <= size:
            return size
    return THUMBNAIL_SIZES[-1]
