"""The interactive API docs, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served offline.

FastAPI's own pages load their scripts, styles and favicon from CDNs; these load the copies
vendored in ``api/static/docs`` (versions and licences in its README) from this server, and
ReDoc's page does without Google Fonts. Both pages are served under a strict
Content-Security-Policy (:func:`content_security_policy`), checked in a real Chromium by
``tests/api/test_page.py``. (No ``from __future__ import annotations`` here:
FastAPI reads the endpoints' annotations.)
"""

import base64
import hashlib
import html
import re
import secrets
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "docs"
ASSETS_PATH: Final = "/static/docs"
# Swagger UI shows a badge fetched from validator.swagger.io (sending it the schema's URL)
# unless its validator is switched off.
_SWAGGER_PARAMETERS: Final = {"validatorUrl": None}
_INLINE_SCRIPT: Final = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)
# The two <style> elements redoc.standalone.js (2.5.4) inserts while it loads, before it knows
# the nonce: an empty one and the scrollbar's CSS, allowed by their hashes. A new ReDoc may
# change them; the browser test of /redoc then reports the violation.
_REDOC_EARLY_STYLES: Final = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' "
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"
)
# ReDoc's page: FastAPI's has no way to pass ReDoc the style nonce, so it is written here.
_REDOC_PAGE: Final = """<!DOCTYPE html>
<html>
<head>
<title>{title}</title>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="shortcut icon" href="{favicon}">
</head>
<body>
<div id="redoc" spec-url="{spec}"></div>
<script src="{script}"></script>
<script>
var root = document.getElementById("redoc");
Redoc.init(root.getAttribute("spec-url"), {{nonce: "{nonce}"}}, root);
</script>
</body>
</html>
"""


def content_security_policy(html: str, nonce: str | None = None) -> str:
    """A strict policy for one docs page: scripts from this server, plus the page's own inline
    initialiser by its hash; images, styles and requests from this server only.

    ReDoc writes its styles into ``<style>`` elements at run time: they carry ``nonce`` (ReDoc
    passes its ``nonce`` option on), so no ``'unsafe-inline'`` is needed. ReDoc also renders a
    "powered by" logo from cdn.redoc.ly whatever its options: under this policy the browser
    never requests it (and ReDoc hides the broken image).
    """
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]
    styles = "'self'" if nonce is None else f"'self' 'nonce-{nonce}' {_REDOC_EARLY_STYLES}"
    return "; ".join(
        (
            "default-src 'none'",
            " ".join(("script-src 'self'", *hashes)),
            f"style-src {styles}",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def _with_policy(page: HTMLResponse, nonce: str | None = None) -> HTMLResponse:
    policy = content_security_policy(bytes(page.body).decode(), nonce)
    page.headers["Content-Security-Policy"] = policy
    page.headers["X-Content-Type-Options"] = "nosniff"
    page.headers["Referrer-Policy"] = "no-referrer"
    return page


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets; call with ``docs_url=redoc_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    app.include_router(_router(app))


def _router(app: FastAPI) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    title = f"{app.title} API"

    def urls(request: Request) -> tuple[str, str]:
        # Behind a proxy that mounts the app under a path, as FastAPI's own pages do.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return f"{root}{app.openapi_url}", f"{root}{ASSETS_PATH}"

    @routes.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=openapi,
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets}/swagger-ui.css",
                swagger_favicon_url=f"{assets}/favicon-32x32.png",
                swagger_ui_parameters=_SWAGGER_PARAMETERS,
            )
        )

    @routes.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        nonce = secrets.token_urlsafe(18)
        page = _REDOC_PAGE.format(
            title=html.escape(f"{title} - ReDoc"),
            favicon=html.escape(f"{assets}/favicon-32x32.png"),
            spec=html.escape(openapi),
            script=html.escape(f"{assets}/redoc.standalone.js"),
            nonce=nonce,
        )
        return _with_policy(HTMLResponse(page), nonce)

    return routes
