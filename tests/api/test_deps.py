"""Overriding ``get_es`` or ``get_settings`` reaches every endpoint, reads included."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from api.app import create_app
from api.deps import get_es, get_settings
from api.settings import Settings
from search import parse, render
from tests.api.conftest import READ_KEY, client_for, error_of

pytestmark = pytest.mark.anyio

# Nothing listens there: only an override can answer.
SETTINGS = Settings(es_url="http://127.0.0.1:9", index="the-items")
QUERY = {"query": "object_prefix:car"}


class _CountingClient:
    """Stands in for AsyncElasticsearch: counts 42 items and records the indices asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def count(self, *, index: str, **_: Any) -> Any:
        self.asked.append(index)
        return {"count": 42, "_shards": {"total": 1, "failed": 0}}


async def test_overriding_get_es_reaches_read_endpoints() -> None:
    stub = _CountingClient()
    app = create_app(SETTINGS)
    app.dependency_overrides[get_es] = lambda: stub
    async with client_for(app) as client:
        response = await client.post("/v1/count", json=QUERY)
    assert response.status_code == 200, response.text
    assert response.json() == {"query": render(parse(QUERY["query"])), "count": 42, "hints": []}
    assert stub.asked == ["the-items"]


async def test_overriding_get_settings_reaches_read_endpoints() -> None:
    keyed = SETTINGS.model_copy(
        update={
            "open_reads": False,
            "read_api_keys": SecretStr(f"reader:{READ_KEY}"),
            "index": "other-items",
        }
    )
    stub = _CountingClient()
    app = create_app(SETTINGS)
    app.dependency_overrides[get_settings] = lambda: keyed
    app.dependency_overrides[get_es] = lambda: stub
    async with client_for(app) as client:
        refused = await client.post("/v1/count", json=QUERY)
        allowed = await client.post("/v1/count", json=QUERY, headers={"X-API-Key": READ_KEY})
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "unauthorized"
    assert allowed.status_code == 200, allowed.text
    assert stub.asked == ["other-items"]
