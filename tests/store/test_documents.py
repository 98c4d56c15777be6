"""Derived fields: label prefixes, count places and the item-level autotag_status; the stored
time format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from store import schema as f
from store.clock import utc_iso
from store.documents import derive_item_status, prepare_item
from store.schema import count_rank_key, label_matches_prefix, label_prefixes


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("car", ["car"]),
        ("car_suv", ["car", "car_suv"]),
        ("traffic_sign_stop", ["traffic", "traffic_sign", "traffic_sign_stop"]),
        ("a__b", ["a", "a_", "a__b"]),
        ("_x", ["_x"]),
        ("x_", ["x", "x_"]),
    ],
)
def test_label_prefixes(label: str, expected: list[str]) -> None:
    assert label_prefixes(label) == expected


@pytest.mark.parametrize("label", ["cargo_ship", "car", "car_suv", "a__b", "weather_clear"])
def test_label_prefixes_agree_with_the_reference_definition(label: str) -> None:
    candidates = {label[:i] for i in range(1, len(label) + 1)} | {"car", "cargo", "weather"}
    assert {c for c in candidates if label_matches_prefix(label, c)} == set(label_prefixes(label))


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], []),
        (["pending"], ["pending"]),
        (["accepted", "pending"], ["pending"]),
        (["accepted", "accepted"], ["reviewed", "accepted"]),
        (["accepted", "modified"], ["reviewed"]),
        (["rejected"], ["reviewed"]),
    ],
)
def test_item_status(statuses: list[str], expected: list[str]) -> None:
    assert derive_item_status([{"status": s} for s in statuses]) == expected


def test_prepare_item_fills_derived_fields_without_touching_the_input() -> None:
    item = {"item_id": "i", "object_predictions": [{"label": "car_suv", "score": 0.5}]}
    prepared = prepare_item(item)
    assert prepared["object_predictions"][0]["label_prefixes"] == ["car", "car_suv"]
    assert prepared["object_predictions"][0]["status"] == "pending"
    assert prepared["image_predictions"] == []
    assert prepared["autotag_status"] == ["pending"]
    assert "label_prefixes" not in item["object_predictions"][0]


def test_times_are_stored_as_utc_with_milliseconds_and_a_z() -> None:
    moment = datetime(2025, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
    assert utc_iso(moment) == "2025-01-15T10:00:00.123Z"
    oslo = moment.astimezone(timezone(timedelta(hours=1)))
    assert utc_iso(oslo) == "2025-01-15T10:00:00.123Z"
    with pytest.raises(ValueError, match="naive"):
        utc_iso(datetime(2025, 1, 15, 10, 0))
    before = datetime.now(UTC).replace(microsecond=0)
    now = datetime.fromisoformat(utc_iso())
    assert now.tzinfo == UTC
    assert before <= now <= datetime.now(UTC)


def test_box_geometry_is_derived_from_the_box_and_the_image_size() -> None:
    box = {"x1": 10, "y1": 20, "x2": 50, "y2": 120}
    item = {
        "item_id": "i",
        "width": 200,
        "height": 100,
        "object_predictions": [{"label": "car", "bbox": box}, {"label": "car"}],
    }
    with_box, without_box = prepare_item(item)["object_predictions"]
    assert with_box["box_width"] == 40
    assert with_box["box_height"] == 100
    assert with_box["box_area"] == 4000
    assert with_box["relative_area"] == 0.2
    assert not {"box_width", "box_height", "box_area", "relative_area"} & without_box.keys()


def test_relative_area_is_absent_without_the_image_size() -> None:
    box = {"x1": 0, "y1": 0, "x2": 4, "y2": 4}
    item = {"item_id": "i", "width": 200, "object_predictions": [{"label": "car", "bbox": box}]}
    prepared = prepare_item(item)["object_predictions"][0]
    assert prepared["box_area"] == 16
    assert "relative_area" not in prepared


def test_a_changed_box_replaces_stale_geometry() -> None:
    stale = {"label": "car", "bbox": {"x1": 0, "y1": 0, "x2": 2, "y2": 2}, "box_area": 99.0}
    prepared = prepare_item({"item_id": "i", "object_predictions": [stale]})
    assert prepared["object_predictions"][0]["box_area"] == 4
    dropped = prepare_item({"item_id": "i", "object_predictions": [{"label": "c", "box_area": 9}]})
    assert "box_area" not in dropped["object_predictions"][0]


def test_relative_area_is_capped_at_the_whole_image() -> None:
    past_the_edges = {"x1": -10, "y1": -10, "x2": 30, "y2": 30}
    item = {"item_id": "i", "width": 20, "height": 20, "object_predictions": [
        {"label": "car", "bbox": past_the_edges}]}  # fmt: skip
    prepared = prepare_item(item)["object_predictions"][0]
    assert prepared["box_area"] == 1600
    assert prepared["relative_area"] == 1


def _places(item: dict[str, object], path: str = f.OBJECT_PREDICTIONS) -> list[list[str] | None]:
    return [p.get(f.PRED_COUNT_RANKS) for p in prepare_item(item)[path]]


def test_count_ranks_place_each_visible_prediction_from_the_best_score() -> None:
    objects = [
        {f.PRED_LABEL: "car_suv", f.PRED_SCORE: 0.9, f.PRED_TRAINING_SET: "v1"},
        {f.PRED_LABEL: "car", f.PRED_SCORE: 0.5, f.PRED_TRAINING_SET: "v2"},
        {f.PRED_LABEL: "car", f.PRED_SCORE: 0.95, f.PRED_STATUS: "rejected"},
        {f.PRED_LABEL: "car", f.PRED_TRAINING_SET: "v1"},  # no score: last
        {f.PRED_LABEL: "car", f.PRED_SCORE: 0.9, f.PRED_TRAINING_SET: "v1"},  # a tie: after
    ]
    assert _places({f.ITEM_ID: "a", f.OBJECT_PREDICTIONS: objects}) == [
        ["1:3:car", "1:3:car@v1", "1:7:car_suv", "1:7:car_suv@v1"],
        ["3:3:car", "1:3:car@v2"],
        None,  # rejected predictions are never counted
        ["4:3:car", "3:3:car@v1"],
        ["2:3:car", "2:3:car@v1"],
    ]


def test_count_ranks_are_derived_again_when_a_review_rejects_one() -> None:
    item = prepare_item(
        {
            f.ITEM_ID: "a",
            f.IMAGE_PREDICTIONS: [
                {f.PRED_LABEL: "weather_rain", f.PRED_SCORE: 0.8},
                {f.PRED_LABEL: "weather_snow", f.PRED_SCORE: 0.6},
            ],
        }
    )
    assert _places(item, f.IMAGE_PREDICTIONS)[1] == ["2:7:weather", "1:12:weather_snow"]
    item[f.IMAGE_PREDICTIONS][0][f.PRED_STATUS] = "rejected"
    assert _places(item, f.IMAGE_PREDICTIONS) == [None, ["1:7:weather", "1:12:weather_snow"]]


def test_count_rank_keys_cannot_be_confused_by_label_text() -> None:
    # "a@b" any training set and "a" of training set "b" would both read "a@b" without lengths.
    assert count_rank_key(1, "a@b", None) != count_rank_key(1, "a", "b")
