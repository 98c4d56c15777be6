"""Which endpoints take which queries: a saved slice selects a run's items like any query, and a
similarity clause (which only ranks search hits) is refused, at the clause, by every endpoint
that works on all the items a query selects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from store.slices import slices_index
from tests.api.conftest import ITEMS, REVIEW_KEY, client_for, error_of, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]
WRITE = {"X-API-Key": REVIEW_KEY}
SIMILAR = 'similar:"snow"'


@pytest.fixture
async def api(
    es: Elasticsearch, es_url: str, item_index: str, runs_index: str
) -> AsyncIterator[httpx.AsyncClient]:
    seed(es, item_index, ITEMS)
    settings = Settings(
        es_url=es_url,
        index=item_index,
        runs_index=runs_index,
        review_api_keys=SecretStr(f"alice:{REVIEW_KEY}"),
    )
    async with client_for(create_app(settings)) as client:
        yield client
    es.indices.delete(index=slices_index(item_index), ignore_unavailable=True)


FILTER_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("/v1/export", {"format": "jsonl"}),
    ("/v1/evaluate", {"training_sets": ["model_v1"]}),
    ("/v1/review-by-query/preview", {}),
    ("/v1/review-by-query", {"action": "accept"}),
]


@pytest.mark.parametrize(("path", "body"), FILTER_ONLY, ids=[path for path, _ in FILTER_ONLY])
async def test_similarity_is_refused_where_every_selected_item_is_used(
    api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    query = f"dataset = d1 AND {SIMILAR}"
    response = await api.post(path, json={"query": query, **body}, headers=WRITE)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "invalid_query"
    assert "only ranks search hits" in error["message"]
    start = query.index(SIMILAR)
    assert (error["details"]["start"], error["details"]["end"]) == (start, start + len(SIMILAR))


async def test_a_run_refuses_similarity_and_takes_a_saved_slice(api: httpx.AsyncClient) -> None:
    refused = await api.post(
        "/v1/runs",
        json={"select": {"query": SIMILAR}, "training_set": "v9"},
        headers=WRITE,
    )
    assert refused.status_code == 400, refused.text
    assert "only ranks search hits" in error_of(refused)["message"]
    assert (await api.get("/v1/runs")).json()["runs"] == []

    saved = await api.put("/v1/slices/first-dataset", json={"query": "dataset = d1"}, headers=WRITE)
    assert saved.status_code in (200, 201), saved.text
    response = await api.post(
        "/v1/runs",
        json={"select": {"query": 'slice = "first-dataset"'}, "training_set": "v9"},
        headers=WRITE,
    )
    assert response.status_code == 201, response.text
    selection = response.json()["selection"]
    assert selection["kind"] == "query"
    # The run keeps the slice written out: renaming or changing the slice later does not
    # change which items the run was asked for.
    assert "d1" in selection["query"], selection
