"""``/docs`` and ``/redoc`` work offline: every asset they name is served by the app itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest

from api.app import create_app
from api.routes.docs import ASSETS_DIR
from api.settings import Settings
from tests.api.conftest import client_for

pytestmark = pytest.mark.anyio

# The pages need no node: nothing listens here.
SETTINGS = Settings(es_url="http://127.0.0.1:9", index="the-items")
_URL = re.compile(r"\b(?:https?:)?//[\w.-]", re.IGNORECASE)
# Swagger UI's inline initialiser names the schema as ``url: '/openapi.json'``.
_SCRIPT_URL = re.compile(r"""\burl:\s*['"]([^'"]+)['"]""")


class _References(HTMLParser):
    """Every URL a page's tags and inline script refer to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        self.urls.extend(_SCRIPT_URL.findall(data))


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser.urls


@pytest.fixture
async def docs_client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(SETTINGS)) as client:
        yield client


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (
            "/docs",
            {
                "/openapi.json",
                "/static/docs/swagger-ui-bundle.js",
                "/static/docs/swagger-ui.css",
                "/static/docs/favicon-32x32.png",
            },
        ),
        ("/redoc", {"/openapi.json", "/static/docs/redoc.standalone.js"}),
    ],
)
async def test_docs_pages_load_everything_from_the_server(
    docs_client: httpx.AsyncClient, page: str, expected: set[str]
) -> None:
    response = await docs_client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    # No absolute or protocol-relative URL at all: nothing outside this server is named.
    assert _URL.search(html) is None, _URL.search(html)
    assert "fonts.googleapis" not in html
    urls = references(html)
    assert expected <= set(urls), urls
    for url in urls:
        asset = await docs_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


async def test_assets_name_no_missing_source_map(docs_client: httpx.AsyncClient) -> None:
    """A bundle's trailing ``sourceMappingURL`` would send devtools after an absent file."""
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        text = (ASSETS_DIR / name).read_text(encoding="utf-8")
        tail = text.rstrip().splitlines()[-1]
        assert "sourceMappingURL" not in tail, name
        served = await docs_client.get(f"/static/docs/{name}")
        assert served.status_code == 200
        assert served.text == text


async def test_swagger_ui_validator_badge_is_off(docs_client: httpx.AsyncClient) -> None:
    """Else Swagger UI loads a badge from validator.swagger.io, telling it the schema's URL."""
    html = (await docs_client.get("/docs")).text
    assert '"validatorUrl": null' in html


async def test_docs_honour_the_root_path() -> None:
    app = create_app(SETTINGS)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/autotag")
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            html = (await client.get("/autotag/docs")).text
    urls = set(references(html))
    assert "/autotag/openapi.json" in urls
    assert "/autotag/static/docs/swagger-ui-bundle.js" in urls


async def test_docs_pages_stay_out_of_the_schema(docs_client: httpx.AsyncClient) -> None:
    paths = (await docs_client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/static"))]
