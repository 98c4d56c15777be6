"""Cursor pagination through more than 10,000 hits: no duplicates, no gaps, any sort."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from api.app import create_app
from api.settings import Settings
from store.mapping import index_settings, item_mapping
from tests.api.conftest import client_for, error_of, pred, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]

N_ITEMS = 10_500
QUERY = "image_prefix:weather_clear"


def _items(n: int, rng: random.Random) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        item: dict[str, Any] = {
            "item_id": f"p{i:05d}",
            # Few distinct scores and dates: the tiebreaker on item_id does the real work.
            "image_predictions": [pred(f"p{i}-w", "weather_clear", rng.choice([0.1, 0.5, 0.9]))],
        }
        if i % 7:
            item["uploaded_at"] = f"2025-01-{1 + i % 28:02d}T00:00:00Z"
        items.append(item)
    return items


@pytest.fixture(scope="module")
def big_index(es: Elasticsearch) -> Iterator[str]:
    """10,500 small items, loaded once for the module."""
    name = f"test-api-pages-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=name, mappings=item_mapping(), settings=index_settings())
    items = _items(N_ITEMS, random.Random(1))
    for start in range(0, N_ITEMS, 3500):
        seed(es, name, items[start : start + 3500])
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture
async def client(es_url: str, big_index: str) -> Any:
    settings = Settings(es_url=es_url, index=big_index, max_page_size=1000)
    async with client_for(create_app(settings)) as c:
        yield c


async def _walk(
    client: httpx.AsyncClient, between_pages: Any = None, **options: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    ids: list[str] = []
    pages = []
    body: dict[str, Any] = {"query": QUERY, "size": 1000, **options}
    while True:
        response = await client.post("/v1/search", json=body)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        ids += [hit["item"]["item_id"] for hit in page["hits"]]
        if page["next_cursor"] is None:
            return ids, pages
        body["cursor"] = page["next_cursor"]
        if between_pages is not None:
            between_pages(len(pages))


@pytest.mark.parametrize(
    ("sort", "order"), [("score", "desc"), ("uploaded_at", "asc"), ("item_id", "desc")]
)
async def test_every_item_exactly_once(client: httpx.AsyncClient, sort: str, order: str) -> None:
    ids, pages = await _walk(client, sort=sort, order=order)
    assert len(pages) == 11
    assert len(ids) == len(set(ids)) == N_ITEMS
    assert pages[0]["total_relation"] == "gte"
    if sort == "item_id":
        assert ids == sorted(ids, reverse=True)
    if sort == "score":  # by the matched prediction's score, then by item_id
        keys = [
            (-hit["item"]["image_predictions"][0]["score"], hit["item"]["item_id"])
            for page in pages
            for hit in page["hits"]
        ]
        assert keys == sorted(keys)


async def test_point_in_time_pages_ignore_later_writes(
    client: httpx.AsyncClient, es: Elasticsearch, big_index: str
) -> None:
    def write(page: int) -> None:
        if page == 3:  # half-way: add matching items and delete one not yet returned
            seed(
                es,
                big_index,
                [{"item_id": "zz-new", "image_predictions": [pred("n", "weather_clear", 0.9)]}],
            )
            es.delete(index=big_index, id="p10499", refresh=True)

    try:
        ids, pages = await _walk(client, write, sort="item_id", consistent=True)
        assert len(ids) == len(set(ids)) == N_ITEMS
        assert "zz-new" not in ids
        assert "p10499" in ids
        cursors = [page["next_cursor"] for page in pages[:-1]]
        assert all(cursors)
    finally:
        seed(es, big_index, _items(N_ITEMS, random.Random(1))[-1:])
        es.options(ignore_status=404).delete(index=big_index, id="zz-new", refresh=True)


async def test_a_cursor_belongs_to_its_query_and_sort(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/search", json={"query": QUERY, "size": 5})).json()
    cursor = first["next_cursor"]
    for changed in ({"query": "image_prefix:weather"}, {"sort": "item_id"}, {"order": "asc"}):
        body = {"query": QUERY, "size": 5, "cursor": cursor, **changed}
        response = await client.post("/v1/search", json=body)
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_cursor"
