"""The facets' score histogram and the labels in use (what the review page shows and offers)."""

from __future__ import annotations

import itertools

import httpx
import pytest
from elasticsearch import Elasticsearch

from api.query import histogram_edges
from tests.api.conftest import pred, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]


async def test_histogram_bins_count_what_their_range_query_matches(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    # One prediction per item, on and between bin edges, where float32 rounding bites.
    scores = [1.0, 0.95, 0.9, 0.8, 0.7, 0.69, 0.3, 0.1, 0.0, -0.05, -0.3, -0.7, -0.9, -1.0]
    items = [
        {"item_id": f"h{i}", "image_predictions": [pred(f"h{i}-e", "edge", score)]}
        for i, score in enumerate(scores)
    ]
    items.append(
        {"item_id": "gone", "image_predictions": [pred("g", "edge", 0.5, status="rejected")]}
    )
    seed(es, item_index, items)
    answer = await client.post("/v1/facets", json={"query": "image_prefix:edge"})
    assert answer.status_code == 200, answer.text
    histogram = answer.json()["kinds"][0]["histogram"]
    edges = histogram_edges()
    assert [(b["low"], b["high"]) for b in histogram] == list(itertools.pairwise(edges))
    for low, high, count in [(b["low"], b["high"], b["predictions"]) for b in histogram]:
        # The narrowing the page applies when a bin is clicked.
        upper = f" AND score < {high}" if high < 1 else ""
        query = f"image_prefix:edge AND (score >= {low}{upper})"
        counted = (await client.post("/v1/count", json={"query": query})).json()["count"]
        assert count == counted, (low, high)
    assert sum(b["predictions"] for b in histogram) == len(scores)  # the rejected one is out


async def test_labels_in_use_per_kind(client: httpx.AsyncClient, seeded: str) -> None:
    answer = await client.get("/v1/labels")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["image"] == ["weather_clear", "weather_rain"]  # most frequent first
    # i4's car is rejected but cars remain elsewhere; every visible object label is offered.
    assert set(body["object"]) == {"car", "pedestrian", "car_suv", "cargo_ship"}
    assert body["object"][0] == "car"
