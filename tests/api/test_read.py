"""Search, count, translate, facets, items and health against the real app and a real node."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from search import parse, render, translate
from search.ast import Band
from tests.api.conftest import READ_KEY, REVIEW_KEY, client_for, error_of, pred, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]


async def _ids(client: httpx.AsyncClient, query: str, **options: Any) -> list[str]:
    response = await client.post("/v1/search", json={"query": query, **options})
    assert response.status_code == 200, response.text
    return [hit["item"]["item_id"] for hit in response.json()["hits"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("object_prefix:car", {"i1", "i2", "i3"}),
        ("object_prefix:car AND score < 0.5", {"i2", "i3"}),
        ("image_prefix:weather_clear", {"i1", "i3", "i4"}),
        ('training_set = "model_v2"', {"i2", "i3", "i4"}),
        ('autotag_status = "pending"', {"i1", "i2", "i3", "i4"}),
        ("image_prefix:weather_clear AND score >= 0.8", {"i1", "i4"}),
    ],
)
async def test_search_finds_the_items_the_query_means(
    client: httpx.AsyncClient, seeded: str, query: str, expected: set[str]
) -> None:
    assert set(await _ids(client, query)) == expected


async def test_each_hit_says_which_predictions_matched(
    client: httpx.AsyncClient, seeded: str
) -> None:
    response = await client.post(
        "/v1/search", json={"query": "object_prefix:car AND score < 0.5", "sort": "item_id"}
    )
    body = response.json()
    assert body["query"] == render(parse("object_prefix:car AND score < 0.5"))
    assert (body["total"], body["total_relation"], body["next_cursor"]) == (2, "eq", None)
    matched = {h["item"]["item_id"]: h["matched_predictions"] for h in body["hits"]}
    assert matched == {
        "i2": [{"kind": "object", "offset": 0, "id": "i2-suv"}],
        "i3": [{"kind": "object", "offset": 1, "id": "i3-car"}],
    }
    # Hits carry the whole item, but not its review history.
    hit = body["hits"][0]["item"]
    assert hit["image_predictions"][0]["label"] == "weather_rain"
    assert "review_history" not in hit


@pytest.mark.parametrize(
    ("sort", "order", "expected"),
    [
        ("score", None, ["i4", "i1", "i3"]),  # best matched weather_clear score first
        ("score", "asc", ["i3", "i4", "i1"]),  # worst matched score first
        ("uploaded_at", None, ["i3", "i1", "i4"]),  # newest first, undated last
        ("uploaded_at", "asc", ["i1", "i3", "i4"]),
        ("item_id", None, ["i1", "i3", "i4"]),
        ("item_id", "desc", ["i4", "i3", "i1"]),
    ],
)
async def test_sorts(
    client: httpx.AsyncClient, seeded: str, sort: str, order: str | None, expected: list[str]
) -> None:
    options: dict[str, Any] = {"sort": sort} | ({"order": order} if order else {})
    assert await _ids(client, "image_prefix:weather_clear", **options) == expected


async def test_small_pages_follow_the_cursor(client: httpx.AsyncClient, seeded: str) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        body: dict[str, Any] = {"query": "image_prefix:weather_clear", "size": 1}
        if cursor:
            body["cursor"] = cursor
        page = (await client.post("/v1/search", json=body)).json()
        seen += [hit["item"]["item_id"] for hit in page["hits"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["i4", "i1", "i3"]


async def test_count(client: httpx.AsyncClient, seeded: str) -> None:
    response = await client.post("/v1/count", json={"query": 'training_set = "model_v2"'})
    canonical = render(parse('training_set = "model_v2"'))
    assert response.json() == {"query": canonical, "count": 3, "hints": []}


async def test_translate_explains_without_running(client: httpx.AsyncClient) -> None:
    # No items seeded: nothing runs against the index.
    query = "object_prefix:car AND score < 0.5"
    response = await client.post("/v1/translate", json={"query": query})
    assert response.status_code == 200
    assert response.json() == {
        "query": render(parse(query)),
        "dsl": translate(parse(query)),
        "slices": {},
    }


async def test_facets(client: httpx.AsyncClient, seeded: str) -> None:
    response = await client.post("/v1/facets", json={"query": "score >= -1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 4
    assert body["autotag_status"] == [{"status": "pending", "items": 4}]
    image, objects = body["kinds"]
    assert image["kind"] == "image"
    assert image["labels"] == [
        {
            "label": "weather_clear",
            "items": 3,
            "predictions": 4,
            "scores": {"high": 3, "medium": 0, "low": 1, "negative": 0},
        },
        {
            "label": "weather_rain",
            "items": 1,
            "predictions": 1,
            "scores": {"high": 0, "medium": 1, "low": 0, "negative": 0},
        },
    ]
    assert image["training_sets"] == [
        {"value": "model_v2", "items": 3, "predictions": 3},
        {"value": "model_v1", "items": 2, "predictions": 2},
    ]
    # The rejected car of i4 is not counted as a car, but shows among the statuses.
    car = next(label for label in objects["labels"] if label["label"] == "car")
    assert (car["items"], car["predictions"]) == (2, 2)
    assert {s["value"]: s["predictions"] for s in objects["statuses"]} == {
        "pending": 5,
        "rejected": 1,
    }
    assert body["comparison"] is None


async def test_facet_bands_count_what_band_queries_match(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    # One prediction per item, on and around every band edge, so items and predictions agree.
    scores = [1.0, 0.9, 0.8, 0.79, 0.5, 0.3, 0.0, -0.2, -1.0]
    items = [
        {"item_id": f"b{i}", "image_predictions": [pred(f"b{i}-e", "edge", score)]}
        for i, score in enumerate(scores)
    ]
    seed(es, item_index, items)
    response = await client.post("/v1/facets", json={"query": "image_prefix:edge"})
    assert response.status_code == 200, response.text
    [label] = response.json()["kinds"][0]["labels"]
    expected: dict[str, int] = {}
    for band in Band:
        query = f"image_prefix:edge AND score = {band}"
        counted = await client.post("/v1/count", json={"query": query})
        expected[band.value] = counted.json()["count"]
    assert label["scores"] == expected
    assert sum(expected.values()) == len(scores)


async def test_facets_compare_two_training_sets(client: httpx.AsyncClient, seeded: str) -> None:
    compare = {"training_set_a": "model_v1", "training_set_b": "model_v2", "threshold": 0.5}
    response = await client.post("/v1/facets", json={"query": "score >= -1", "compare": compare})
    assert response.status_code == 200, response.text
    comparison = response.json()["comparison"]
    assert comparison["threshold"] == 0.5
    rows = {(r["kind"], r["label"]): r for r in comparison["labels"]}
    clear = rows[("image", "weather_clear")]
    assert (clear["items_a"], clear["items_b"], clear["items_both"]) == (2, 1, 1)
    assert clear["mean_score_a"] == pytest.approx(0.875, abs=1e-6)
    assert clear["mean_score_b"] == pytest.approx(0.675, abs=1e-6)
    assert clear["mean_score_difference"] == pytest.approx(-0.2, abs=1e-6)
    rain = rows[("image", "weather_rain")]
    assert (rain["items_a"], rain["items_b"], rain["items_both"]) == (0, 1, 0)
    assert (rain["mean_score_a"], rain["mean_score_difference"]) == (None, None)
    car = rows[("object", "car")]  # i4's rejected car is not a prediction of model_v1
    assert (car["items_a"], car["items_b"], car["items_both"]) == (1, 0, 0)


async def test_get_item(client: httpx.AsyncClient, seeded: str) -> None:
    response = await client.get("/v1/items/i1")
    assert response.status_code == 200
    body = response.json()
    assert body["item"]["item_id"] == "i1"
    assert [p["id"] for p in body["item"]["object_predictions"]] == ["i1-car", "i1-ped"]
    assert body["item"]["autotag_status"] == ["pending"]
    assert set(body["version"]) == {"seq_no", "primary_term"}


async def test_unknown_item_is_404(client: httpx.AsyncClient, seeded: str) -> None:
    response = await client.get("/v1/items/nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == "item_not_found"


async def test_health(client: httpx.AsyncClient, seeded: str, item_index: str) -> None:
    assert (await client.get("/v1/health/live")).json() == {"status": "ok"}
    ready = await client.get("/v1/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "cluster_status": ready.json()["cluster_status"],
        "index": item_index,
        "index_exists": True,
    }
    assert ready.json()["cluster_status"] in ("green", "yellow")


async def test_not_ready_without_the_index(es_url: str) -> None:
    app = create_app(Settings(es_url=es_url, index="autotag-no-such-index"))
    async with client_for(app) as client:
        ready = await client.get("/v1/health/ready")
        assert ready.status_code == 503
        assert ready.json()["index_exists"] is False
        # Reads on a missing index are "unavailable", not a crash.
        response = await client.post("/v1/search", json={"query": "object_prefix:car"})
        assert response.status_code == 503
        assert error_of(response)["code"] == "search_unavailable"


async def test_keyed_reads(api_settings: Settings, seeded: str) -> None:
    settings = api_settings.model_copy(update={"open_reads": False})
    async with client_for(create_app(settings)) as client:
        query = {"query": "object_prefix:car"}
        assert (await client.post("/v1/count", json=query)).status_code == 401
        headers = {"X-API-Key": "wrong"}
        assert (await client.post("/v1/count", json=query, headers=headers)).status_code == 401
        for key in (READ_KEY, REVIEW_KEY):
            response = await client.post("/v1/count", json=query, headers={"X-API-Key": key})
            assert response.status_code == 200
        # Health stays open for probes.
        assert (await client.get("/v1/health/live")).status_code == 200


def test_secrets_never_show() -> None:
    settings = Settings(
        es_password=SecretStr("hunter2"),
        es_api_key=SecretStr("es-api-key-value"),
        review_api_keys=SecretStr("alice:topsecret"),
    )
    text = repr(settings) + str(settings) + repr(settings.review_keys())
    assert "hunter2" not in text
    assert "es-api-key-value" not in text
    assert "topsecret" not in text
