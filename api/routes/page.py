"""The review page at ``/``: static assets shipped in the package, under a strict CSP.

Nothing is built at run time and nothing comes from another host: ``index.html``, ``app.js``
and ``app.css`` in ``api/static/page`` are the whole page. Its Content-Security-Policy allows
scripts, styles, images and requests from this server only, no inline script or style, no
plugins, frames or forms elsewhere, and requires Trusted Types, so the page cannot hand a
string to an HTML sink even by mistake: every value it shows goes in as text. (No
``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations.)
"""

import os
from os import PathLike
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, Response
from starlette.types import Scope

PAGE_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "page"
ASSETS_PATH: Final = "/static/page"

PAGE_CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # blob: for images fetched with the API key (an <img> cannot send a header).
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Assets(StaticFiles):
    """The page's assets with the same headers (revalidated by ETag on every load)."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def install(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, _Assets(directory=PAGE_DIR), name="page-assets")
    routes = APIRouter(include_in_schema=False)

    @routes.get("/")
    async def page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", headers=SECURITY_HEADERS)

    app.include_router(routes)
