"""Empty answers name the query's label terms that match no label in the index, with look-alikes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from api import hints
from api.cache import PerIndexCache
from cli.main import main
from search import parse
from search.ast import Count, Label, Op
from store.schema import PredictionKind
from tests.api.conftest import BOX, pred, seed

pytestmark = pytest.mark.anyio

ITEMS = [
    {
        "item_id": "h1",
        "image_predictions": [pred("h1-w", "weather_clear", 0.8)],
        "object_predictions": [pred("h1-tl", "traffic_light", 0.9, bbox=BOX)],
    },
    {"item_id": "h2", "object_predictions": [pred("h2-car", "car", 0.5, bbox=BOX)]},
]
TRAFFIC_LIGHT = 'object_prefix:"traffic light"'


@pytest.fixture
def labelled(es: Elasticsearch, item_index: str) -> str:
    seed(es, item_index, ITEMS)
    return item_index


async def _read(client: httpx.AsyncClient, endpoint: str, query: str) -> dict[str, Any]:
    response = await client.post(f"/v1/{endpoint}", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _empty(endpoint: str, body: dict[str, Any]) -> bool:
    return bool(body["count" if endpoint == "count" else "total"] == 0)


@pytest.mark.parametrize("endpoint", ["search", "count", "facets"])
async def test_an_absent_label_gets_a_hint_naming_the_existing_one(
    client: httpx.AsyncClient, labelled: str, endpoint: str
) -> None:
    body = await _read(client, endpoint, TRAFFIC_LIGHT)
    assert _empty(endpoint, body)
    [hint] = body["hints"]
    assert hint["kind"] == "object"
    assert hint["typed"] == "traffic light"
    assert hint["prefix"] is False
    assert hint["closest"][0] == "traffic_light"


@pytest.mark.parametrize("endpoint", ["search", "count", "facets"])
async def test_an_existing_label_that_matches_nothing_gets_no_hint(
    client: httpx.AsyncClient, labelled: str, endpoint: str
) -> None:
    body = await _read(client, endpoint, "object_prefix:traffic_light AND score < 0")
    assert _empty(endpoint, body)
    assert body["hints"] == []


async def test_answers_with_hits_get_no_hints(client: httpx.AsyncClient, labelled: str) -> None:
    query = "object_prefix:traffic_light OR object_prefix:bicycle"
    for endpoint in ("search", "count", "facets"):
        body = await _read(client, endpoint, query)
        assert not _empty(endpoint, body)
        assert body["hints"] == [], endpoint


async def test_labels_are_looked_up_per_kind(client: httpx.AsyncClient, labelled: str) -> None:
    body = await _read(client, "search", "image_prefix:traffic_light")
    assert body["hints"] == [
        {"kind": "image", "typed": "traffic_light", "prefix": False, "closest": []}
    ]


async def test_a_negated_label_gets_no_hint(client: httpx.AsyncClient, labelled: str) -> None:
    body = await _read(client, "count", f"object_prefix:bus AND NOT {TRAFFIC_LIGHT}")
    assert [h["typed"] for h in body["hints"]] == ["bus"]


async def test_prefix_terms(client: httpx.AsyncClient, labelled: str) -> None:
    present = await _read(client, "count", "object_prefix:traffic* AND score < 0")
    assert present["hints"] == []
    [hint] = (await _read(client, "count", "object_prefix:trafic*"))["hints"]
    assert hint["prefix"] is True
    assert hint["typed"] == "trafic"
    assert "traffic" in hint["closest"]


async def test_no_hint_when_the_labels_are_too_many_to_list(
    client: httpx.AsyncClient, labelled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A truncated list proves no absence."""
    monkeypatch.setattr(hints, "MAX_LABELS", 1)
    body = await _read(client, "count", "object_prefix:bus")
    assert body["count"] == 0
    assert body["hints"] == []


# --- pure parts ---------------------------------------------------------------------------------


def test_normalise() -> None:
    assert hints.normalise("Traffic  light") == "traffic_light"
    assert hints.normalise("traffic-light!") == "traffic_light"
    assert hints.normalise("car_suv") == "car_suv"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Traffic Light", ["traffic_light", "traffic"]),
        ("traffic_lihgt", ["traffic_light"]),
        ("cra", ["car"]),
        ("zebra", []),
    ],
)
def test_closest(typed: str, expected: list[str]) -> None:
    present = frozenset({"traffic", "traffic_light", "car", "weather", "weather_clear"})
    assert hints.closest(Label(PredictionKind.OBJECT, typed), present)[: len(expected)] == (
        expected
    )
    if not expected:
        assert hints.closest(Label(PredictionKind.OBJECT, typed), present) == []


def test_required_labels() -> None:
    bus = Label(PredictionKind.OBJECT, "bus")
    assert list(hints.required_labels(parse("object_prefix:bus OR image_prefix:x"))) == [
        bus,
        Label(PredictionKind.IMAGE, "x"),
    ]
    assert list(hints.required_labels(parse("NOT object_prefix:bus"))) == []
    assert list(hints.required_labels(Count(bus, Op.GE, 1))) == [bus]
    assert list(hints.required_labels(Count(bus, Op.GT, 0))) == [bus]
    assert list(hints.required_labels(Count(bus, Op.EQ, 0))) == []
    assert list(hints.required_labels(Count(bus, Op.LT, 3))) == []


async def test_per_index_cache_reloads_after_its_ttl() -> None:
    now = [100.0]
    loads: list[str] = []

    def loader(index: str) -> Any:
        async def load() -> str:
            loads.append(index)
            return f"{index}-{len(loads)}"

        return load

    store: PerIndexCache[str] = PerIndexCache(30.0, clock=lambda: now[0])
    assert await store.get("a", loader("a")) == "a-1"
    now[0] += 29.0
    assert await store.get("a", loader("a")) == "a-1"
    assert await store.get("b", loader("b")) == "b-2"
    now[0] += 1.0
    assert await store.get("a", loader("a")) == "a-3"
    assert loads == ["a", "b", "a"]


def test_known_labels_are_none_where_the_answer_lists_not_all() -> None:
    def kind(buckets: list[str], other: int) -> dict[str, Any]:
        terms = {"sum_other_doc_count": other, "buckets": [{"key": k} for k in buckets]}
        return {"labels": terms}

    answer = {"aggregations": {"image": kind(["weather"], 0), "object": kind(["car"], 3)}}
    assert hints.known_labels(answer) == {
        PredictionKind.IMAGE: frozenset({"weather"}),
        PredictionKind.OBJECT: None,
    }
    assert hints.known_labels({"hits": {}}) == dict.fromkeys(PredictionKind)


@pytest.mark.es
async def test_a_coco_import_then_a_search_for_the_typed_name_hints_at_the_stored_label(
    tmp_path: Path, es_url: str, es: Elasticsearch, item_index: str, client: httpx.AsyncClient
) -> None:
    """What a new user does: import a COCO results file, then search for its category name.

    The import stores `traffic light` as `traffic_light` (labels are normalised at import, not
    at query time); the search for the typed name is empty and its hint names the stored one.
    """
    (tmp_path / "images.json").write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "7.jpg", "width": 64, "height": 48}],
                "categories": [{"id": 10, "name": "traffic light"}],
            }
        )
    )
    results = [{"image_id": 7, "category_id": 10, "bbox": [4, 4, 10, 20], "score": 0.9}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    argv = ["import", str(tmp_path / "results.json"), "--coco-images"]
    argv += [str(tmp_path / "images.json"), "--dataset", "street", "--training-set", "coco_v1"]
    argv += ["--index", item_index, "--failures-file", str(tmp_path / "failures.jsonl")]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUTOTAG_ES_URL", es_url)
        assert main(argv) == 0
    es.indices.refresh(index=item_index)  # searchable at once, not after the 1 s refresh

    typed = await _read(client, "search", TRAFFIC_LIGHT)
    assert typed["total"] == 0
    [hint] = typed["hints"]
    assert (hint["kind"], hint["typed"], hint["closest"][0]) == (
        "object",
        "traffic light",
        "traffic_light",
    )
    stored = await _read(client, "search", f"object_prefix:{hint['closest'][0]}")
    assert [hit["item"]["item_id"] for hit in stored["hits"]] == ["street/7.jpg"]
    assert stored["hints"] == []
