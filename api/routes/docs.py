"""The interactive API docs, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served offline.

FastAPI's own pages load their scripts, styles and favicon from CDNs; these load the copies
vendored in ``api/static/docs`` (versions and licences in its README) from this server, and
ReDoc's page does without Google Fonts. (No ``from __future__ import annotations`` here:
FastAPI reads the endpoints' annotations.)
"""

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "docs"
ASSETS_PATH: Final = "/static/docs"
# Swagger UI shows a badge fetched from validator.swagger.io (sending it the schema's URL)
# unless its validator is switched off.
_SWAGGER_PARAMETERS: Final = {"validatorUrl": None}


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
        return get_swagger_ui_html(
            openapi_url=openapi,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters=_SWAGGER_PARAMETERS,
        )

    @routes.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        return get_redoc_html(
            openapi_url=openapi,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon-32x32.png",
            with_google_fonts=False,
        )

    return routes
