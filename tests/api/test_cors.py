"""CORS: off unless ``AUTOTAG_CORS_ORIGINS`` names origins; then for those origins only.

Only ``/v1/health/live`` and preflights are asked, which never reach Elasticsearch.
"""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import client_for

pytestmark = pytest.mark.anyio

DASHBOARD = "https://dash.example.com"
OTHER = "https://evil.example.net"
# No node is asked; the client is made (and closed) by the lifespan only.
UNUSED_NODE = "http://127.0.0.1:9"


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_off_by_default() -> None:
    settings = Settings(es_url=UNUSED_NODE)
    assert settings.cors_origin_list() == []
    async with client_for(create_app(settings)) as client:
        answered = await client.options("/v1/search", headers=preflight(DASHBOARD))
        assert answered.status_code == 405  # no preflight handling at all
        assert cors_headers(answered) == {}
        simple = await client.get("/v1/health/live", headers={"Origin": DASHBOARD})
        assert simple.status_code == 200
        assert cors_headers(simple) == {}


async def test_configured_origins_only() -> None:
    settings = Settings(es_url=UNUSED_NODE, cors_origins=f"{DASHBOARD}/, https://b.example.org")
    assert settings.cors_origin_list() == [DASHBOARD, "https://b.example.org"]
    async with client_for(create_app(settings)) as client:
        allowed = await client.options("/v1/search", headers=preflight(DASHBOARD))
        assert allowed.status_code == 200
        headers = cors_headers(allowed)
        assert headers["access-control-allow-origin"] == DASHBOARD
        assert "POST" in headers["access-control-allow-methods"]
        assert {"content-type", "x-api-key", "x-request-id"} <= {
            h.strip().lower() for h in headers["access-control-allow-headers"].split(",")
        }
        assert "access-control-allow-credentials" not in headers  # keys, not cookies

        refused = await client.options("/v1/search", headers=preflight(OTHER))
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in cors_headers(refused)

        simple = await client.get("/v1/health/live", headers={"Origin": DASHBOARD})
        assert simple.headers["access-control-allow-origin"] == DASHBOARD
        exposed = simple.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed
        assert "retry-after" in exposed
        other = await client.get("/v1/health/live", headers={"Origin": OTHER})
        assert "access-control-allow-origin" not in cors_headers(other)


async def test_preflights_are_counted_and_carry_a_request_id() -> None:
    settings = Settings(es_url=UNUSED_NODE, cors_origins=DASHBOARD)
    async with client_for(create_app(settings)) as client:
        answered = await client.options(
            "/v1/search", headers={**preflight(DASHBOARD), "X-Request-ID": "pre-1"}
        )
        assert answered.headers["X-Request-ID"] == "pre-1"
        scraped = (await client.get("/metrics")).text
    assert (
        'autotag_http_requests_total{method="OPTIONS",route="unmatched",status="200"} 1.0'
        in scraped
    )
