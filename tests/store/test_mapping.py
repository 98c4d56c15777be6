"""The index schema against a real node: round trip, strictness, nested binding."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from store.documents import prepare_item
from store.mapping import item_mapping

pytestmark = pytest.mark.es


def _car_and_pedestrian() -> dict[str, Any]:
    box = {"x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 80.0}
    return prepare_item(
        {
            "item_id": "item-1",
            "dataset": "drives",
            "uri": "s3://bucket/drives/1.jpg",
            "width": 1280,
            "height": 720,
            "uploaded_at": "2025-01-15T10:00:00Z",
            "metadata": {"city": "Oslo", "camera": 3},
            "image_predictions": [
                {
                    "id": "p1",
                    "label": "weather_clear",
                    "score": 0.93,
                    "training_set": "model_v2",
                    "model": "clip",
                    "created_at": "2025-01-16T00:00:00Z",
                },
            ],
            "object_predictions": [
                {
                    "id": "p2",
                    "label": "car",
                    "score": 0.9,
                    "training_set": "model_v2",
                    "model": "frcnn",
                    "bbox": box,
                },
                {
                    "id": "p3",
                    "label": "pedestrian",
                    "score": 0.2,
                    "training_set": "model_v2",
                    "model": "frcnn",
                    "bbox": box,
                    "status": "modified",
                    "original_label": "cyclist",
                },
            ],
        }
    )


def _nested(path: str, *clauses: dict[str, Any]) -> dict[str, Any]:
    return {"nested": {"path": path, "query": {"bool": {"filter": list(clauses)}}}}


def _ids(es: Elasticsearch, index: str, query: dict[str, Any]) -> set[str]:
    response = es.search(index=index, query=query, size=100)
    return {hit["_id"] for hit in response["hits"]["hits"]}


def test_round_trip_keeps_every_field(es: Elasticsearch, item_index: str) -> None:
    document = _car_and_pedestrian()
    es.index(index=item_index, id="item-1", document=document, refresh=True)
    stored = es.get(index=item_index, id="item-1")["_source"]
    assert stored == document
    # p1 and p2 carry no status, so they are pending, and so is the item.
    assert stored["autotag_status"] == ["pending"]
    assert stored["object_predictions"][1]["original_label"] == "cyclist"


def test_label_and_score_bind_to_the_same_prediction(es: Elasticsearch, item_index: str) -> None:
    es.index(index=item_index, id="item-1", document=_car_and_pedestrian(), refresh=True)
    car_below_half = _nested(
        "object_predictions",
        {"term": {"object_predictions.label_prefixes": "car"}},
        {"range": {"object_predictions.score": {"lt": 0.5}}},
    )
    car_above_half = _nested(
        "object_predictions",
        {"term": {"object_predictions.label_prefixes": "car"}},
        {"range": {"object_predictions.score": {"gte": 0.5}}},
    )
    # A car at 0.9 and a pedestrian at 0.2 is not "a car with score < 0.5".
    assert _ids(es, item_index, car_below_half) == set()
    assert _ids(es, item_index, car_above_half) == {"item-1"}


def test_label_prefixes_make_prefix_matching_a_term_lookup(
    es: Elasticsearch, item_index: str
) -> None:
    es.index(index=item_index, id="item-1", document=_car_and_pedestrian(), refresh=True)
    field = "image_predictions.label_prefixes"
    weather = _nested("image_predictions", {"term": {field: "weather"}})
    assert _ids(es, item_index, weather) == {"item-1"}
    partial_word = _nested("image_predictions", {"term": {field: "weat"}})
    assert _ids(es, item_index, partial_word) == set()


def test_mapping_is_strict_except_metadata(es: Elasticsearch, item_index: str) -> None:
    with pytest.raises(BadRequestError, match="strict_dynamic_mapping_exception"):
        es.index(index=item_index, id="bad", document={"item_id": "bad", "colour": "red"})
    es.index(
        index=item_index,
        id="ok",
        document={"item_id": "ok", "metadata": {"anything": "x", "when": "2024-01-01"}},
        refresh=True,
    )
    mapping = es.indices.get_mapping(index=item_index)[item_index]["mappings"]
    metadata = mapping["properties"]["metadata"]["properties"]
    assert metadata["anything"]["type"] == "keyword"
    assert metadata["when"]["type"] == "keyword"  # strings are never guessed to be dates
    assert _ids(es, item_index, {"term": {"metadata.anything": "x"}}) == {"ok"}


def test_box_geometry_is_mapped_as_floats_on_objects_only() -> None:
    properties = item_mapping()["properties"]
    objects = properties["object_predictions"]["properties"]
    images = properties["image_predictions"]["properties"]
    for name in ("box_width", "box_height", "box_area", "relative_area"):
        assert objects[name] == {"type": "float"}
        assert name not in images


def test_new_indexes_are_sorted_by_item_id(es: Elasticsearch, item_index: str) -> None:
    """What lets a page in item-id order stop early (see ``store.mapping.INDEX_SORT``)."""
    settings = es.indices.get_settings(index=item_index)[item_index]["settings"]["index"]
    assert settings["sort"] == {"field": ["item_id"], "order": ["asc"]}
