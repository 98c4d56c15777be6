"""An item's image and its thumbnail (local files inside the image roots only; see api.images).

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations.)
"""

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from api.deps import ReadDep
from api.errors import ApiError
from api.images import (
    CACHE_CONTROL,
    DEFAULT_THUMBNAIL_SIZE,
    THUMBNAIL_SIZES,
    ImageService,
    OpenedImage,
    image_roots,
    item_uri,
    local_path,
    make_thumbnail,
    open_inside,
    read_original,
    thumbnail_size,
)
from api.routes import error_responses

router = APIRouter(prefix="/items", tags=["images"])
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses(401, 403, 404, 413, 415),
    200: {"content": {"image/*": {}}, "description": "The image (raster formats only)"},
    304: {"description": "Not modified (the ETag matched)"},
}


async def get_images(request: Request) -> ImageService:
    images: ImageService = request.app.state.images
    return images


ImagesDep = Annotated[ImageService, Depends(get_images)]


async def _open(read: ReadDep, images: ImageService, item_id: str) -> OpenedImage:
    settings = read.settings
    path = local_path(item_id, await item_uri(read.es, settings.index, item_id))
    configured = settings.configured_image_roots()
    roots = await image_roots(images.recorded, read.es, settings.index, configured)
    try:
        return await to_thread.run_sync(open_inside, item_id, path, roots, limiter=images.limiter)
    except ApiError as error:
        if error.code != "image_outside_roots":
            raise
    # Perhaps indexed a moment ago: read the recorded roots again before refusing.
    roots = await image_roots(images.recorded, read.es, settings.index, configured, fresh=True)
    return await to_thread.run_sync(open_inside, item_id, path, roots, limiter=images.limiter)


def _headers(etag: str) -> dict[str, str]:
    return {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        # An image is never a document: nothing in it may run if opened directly.
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


def _not_modified(request: Request, etag: str) -> bool:
    asked = request.headers.get("if-none-match")
    if not asked:
        return False
    return asked.strip() == "*" or etag in [tag.strip() for tag in asked.split(",")]


@router.get(
    "/{item_id}/image",
    responses=_RESPONSES,
    response_class=Response,
    summary="The item's image file (local path or file:// uri inside an image root)",
)
async def image(item_id: str, request: Request, read: ReadDep, images: ImagesDep) -> Response:
    opened = await _open(read, images, item_id)
    try:
        etag = f'"{opened.key}"'
        if _not_modified(request, etag):
            return Response(status_code=304, headers=_headers(etag))
        data, content_type = await to_thread.run_sync(
            read_original, opened, item_id, limiter=images.limiter
        )
    finally:
        opened.close()
    return Response(data, media_type=content_type, headers=_headers(etag))


@router.get(
    "/{item_id}/thumbnail",
    responses=_RESPONSES,
    response_class=Response,
    summary="A JPEG of the item's image, at most `size` pixels on its long side, cached",
)
async def thumbnail(
    item_id: str,
    request: Request,
    read: ReadDep,
    images: ImagesDep,
    size: Annotated[
        int,
        Query(
            ge=1,
            le=THUMBNAIL_SIZES[-1],
            description=f"Long side in pixels; served at the next of {list(THUMBNAIL_SIZES)}.",
        ),
    ] = DEFAULT_THUMBNAIL_SIZE,
) -> Response:
    size = thumbnail_size(size)
    opened = await _open(read, images, item_id)
    try:
        etag = f'"{opened.key}-{size}"'
        if _not_modified(request, etag):
            return Response(status_code=304, headers=_headers(etag))
        cache = images.thumbnails
        data = await to_thread.run_sync(cache.get, opened.key, size, limiter=images.limiter)
        if data is None:
            data = await to_thread.run_sync(
                make_thumbnail, opened, item_id, size, limiter=images.limiter
            )
            await to_thread.run_sync(cache.put, opened.key, size, data, limiter=images.limiter)
    finally:
        opened.close()
    return Response(data, media_type="image/jpeg", headers=_headers(etag))
