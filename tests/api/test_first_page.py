"""The first page's cost levers keep the answer honest: bounded totals say so, cached pages match.

A page counts hits exactly up to ``track_total_hits``; past it ``total`` is that bound and
``total_relation`` is ``gte`` (as Elasticsearch reports it), while ``/v1/count`` stays exact.
Repeated pages are served from the shard request cache, which a refresh invalidates.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from api.app import create_app
from api.settings import Settings
from indexer.prediction_generator import generate
from store.writer import merge_item
from tests.api.conftest import client_for

pytestmark = [pytest.mark.es, pytest.mark.anyio]

QUERY = 'autotag_status = "pending"'  # matches i1..i4 of the seeded catalogue


async def _search(client: httpx.AsyncClient, **options: Any) -> dict[str, Any]:
    response = await client.post("/v1/search", json={"query": QUERY, **options})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("sort", ["score", "item_id", "uploaded_at"])
async def test_a_total_past_the_bound_is_a_lower_bound(
    api_settings: Settings, seeded: str, sort: str
) -> None:
    bounded = api_settings.model_copy(update={"track_total_hits": 2})
    async with client_for(create_app(bounded)) as client:
        body = await _search(client, sort=sort, size=3)
        count = await client.post("/v1/count", json={"query": QUERY})
    assert (body["total"], body["total_relation"]) == (2, "gte")
    assert count.json()["count"] == 4
    # The page itself is whole: three hits and a cursor to the fourth.
    assert len(body["hits"]) == 3
    assert body["next_cursor"] is not None


async def test_totals_within_the_bound_are_exact(client: httpx.AsyncClient, seeded: str) -> None:
    body = await _search(client)
    assert (body["total"], body["total_relation"]) == (4, "eq")


def _cache_hits(es: Elasticsearch, index: str) -> int:
    stats = es.indices.stats(index=index, metric="request_cache")
    return int(stats["_all"]["total"]["request_cache"]["hit_count"])


async def test_a_repeated_page_comes_from_the_request_cache_until_a_refresh(
    client: httpx.AsyncClient, es: Elasticsearch, seeded: str
) -> None:
    first = await _search(client, sort="item_id")
    before = _cache_hits(es, seeded)
    again = await _search(client, sort="item_id")
    assert _cache_hits(es, seeded) == before + 1
    assert again == first
    # A new item becomes visible at the refresh, which invalidates the cached page.
    es.index(
        index=seeded,
        id="i0",
        document={"item_id": "i0", "autotag_status": ["pending"]},
        refresh=True,
    )
    after = await _search(client, sort="item_id")
    assert [hit["item"]["item_id"] for hit in after["hits"]][:1] == ["i0"]
    assert after["total"] == 5


# Queries whose best matched scores lie above, across and below the probe's threshold.
PROBED = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "model_v2"',
    'autotag_status = "pending"',
    'object_prefix:pedestrian AND score >= 0.8 AND training_set = "model_v2"',
    "image_prefix:weather AND object_prefix:car",
    "(image_prefix:weather_rain OR object_prefix:cyclist) AND score >= 0.5",
    "NOT object_prefix:car",
    'object_prefix:car AND status = "rejected"',
)


def _query_total(es: Elasticsearch, index: str) -> int:
    stats = es.indices.stats(index=index, metric="search")
    return int(stats["_all"]["total"]["search"]["query_total"])


@pytest.mark.parametrize("size", [1, 7, 20])
async def test_the_score_probe_finds_the_same_first_page(
    api_settings: Settings, es: Elasticsearch, item_index: str, size: int
) -> None:
    operations: list[dict[str, Any]] = []
    for entry in generate(3000, seed=7):
        operations.append({"index": {"_index": item_index, "_id": entry.item_id}})
        operations.append(merge_item(None, entry, training_set="t", now="2026-01-01T00:00:00Z"))
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    plain = api_settings.model_copy(update={"score_page_probe": False})
    probed = 0
    async with client_for(create_app(plain)) as off, client_for(create_app(api_settings)) as on:
        for query in PROBED:
            for options in ({}, {"order": "asc"}, {"sort": "item_id"}):
                body = {"query": query, "size": size, **options}
                want = (await off.post("/v1/search", json=body)).json()
                before = _query_total(es, item_index)
                got = (await on.post("/v1/search", json=body)).json()
                # One search without the probe; probe and count when it fills the page.
                probed += _query_total(es, item_index) - before == 2
                assert got == want, (query, options)
    assert probed >= 5  # most of these first pages came from the probe
