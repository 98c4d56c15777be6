"""Mapping a hit's inner hits to the predictions it matched (pure; no node needed)."""

from __future__ import annotations

from typing import Any

from api.query import matched_predictions


def _inner(field: str, *offsets: int) -> dict[str, Any]:
    hits = [{"_nested": {"field": field, "offset": offset}} for offset in offsets]
    return {"hits": {"hits": hits}}


def test_image_predictions_come_first_each_in_stored_order_without_repeats() -> None:
    hit = {
        "_source": {
            "image_predictions": [{"id": "img-0"}, {"id": "img-1"}],
            "object_predictions": [{"id": "obj-0"}, {"id": 7}, {"id": "obj-2"}],
        },
        "inner_hits": {
            # Elasticsearch orders inner hits by score, and two clauses may match the same one.
            "object_predictions_0": _inner("object_predictions", 2, 0),
            "image_predictions_1": _inner("image_predictions", 1),
            "object_predictions_2": _inner("object_predictions", 0, 1),
        },
    }
    assert matched_predictions(hit) == [
        {"kind": "image", "offset": 1, "id": "img-1"},
        {"kind": "object", "offset": 0, "id": "obj-0"},
        {"kind": "object", "offset": 1, "id": "7"},
        {"kind": "object", "offset": 2, "id": "obj-2"},
    ]


def test_a_prediction_without_an_id_or_out_of_range_has_no_id() -> None:
    hit = {
        "_source": {"object_predictions": [{"label": "car"}]},
        "inner_hits": {"object_predictions_0": _inner("object_predictions", 0, 3)},
    }
    assert matched_predictions(hit) == [
        {"kind": "object", "offset": 0, "id": None},
        {"kind": "object", "offset": 3, "id": None},
    ]


def test_a_hit_without_inner_hits_matched_no_prediction() -> None:
    assert matched_predictions({"_source": {"image_predictions": [{"id": "a"}]}}) == []
    assert matched_predictions({"_source": {}, "inner_hits": {}}) == []
