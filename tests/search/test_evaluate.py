"""The reference evaluator on hand-made documents: the semantics, case by case."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from search import BAND_RANGES, Band, evaluate, parse
from store import schema as f
from store.documents import prepare_item


def _item(**fields: Any) -> dict[str, Any]:
    return prepare_item({"item_id": "x", **fields})


def _walker(score: float) -> dict[str, Any]:
    return {"label": "pedestrian", "score": score}


def _objects(*predictions: dict[str, Any]) -> dict[str, Any]:
    return _item(object_predictions=list(predictions))


def _car(score: float, **extra: Any) -> dict[str, Any]:
    return {"label": "car", "score": score, **extra}


@pytest.mark.parametrize(
    ("query", "item", "expected"),
    [
        # One and the same prediction carries the label and the score.
        ("object_prefix:car AND score < 0.5", _objects(_car(0.9), _walker(0.2)), False),
        ("object_prefix:car AND score < 0.5", _objects(_car(0.9), _car(0.2)), True),
        # Unbound: any prediction of either kind.
        ("score < 0.5", _item(image_predictions=[{"label": "night", "score": 0.2}]), True),
        # Labels: `_` boundary vs plain prefix.
        ("object_prefix:car", _objects({"label": "cargo_ship"}), False),
        ("object_prefix:car*", _objects({"label": "cargo_ship"}), True),
        ("object_prefix:car_suv", _objects({"label": "car"}), False),
        # Rejected predictions are invisible unless status is mentioned.
        ("object_prefix:car", _objects(_car(0.9, status="rejected")), False),
        ("object_prefix:car AND status != accepted", _objects(_car(0.9, status="rejected")),
         True),
        ("NOT object_prefix:car", _objects(_car(0.9, status="rejected")), True),
        # Modified predictions match by their current label only.
        ("object_prefix:truck",
         _objects(_car(0.9, status="modified", original_label="truck")), False),
        # A missing score: ranges fail, != holds.
        ("object_prefix:car AND score >= 0", _objects({"label": "car"}), False),
        ("object_prefix:car AND score != 0.5", _objects({"label": "car"}), True),
        # Scores compare as 32-bit floats, like the index stores them.
        ("score > 0.8", _objects(_car(0.80000001)), False),
        ("score = high", _objects(_car(1.0)), True),
        ("score = medium", _objects(_car(0.8)), False),
        ("score = negative", _objects(_car(0.0)), False),
        ("score = low", _objects(_car(0.0)), True),
        # Item fields: missing and !=, lists, dates as strings or epoch millis.
        ("dataset != train", _item(), True),
        ("dataset = train", _item(), False),
        ("autotag_status = reviewed", _objects(_car(0.9, status="accepted")), True),
        ("autotag_status != accepted", _objects(_car(0.9, status="accepted")), False),
        ("autotag_status = pending", _item(), False),
        ("autotag_status != pending", _item(), True),
        ("uploaded_at = 2024-01-31", _item(uploaded_at="2024-01-31T23:59:59.999Z"), True),
        ("uploaded_at > 2024-01-31", _item(uploaded_at="2024-02-01T00:00:00Z"), True),
        ("uploaded_at <= 2024-01-31", _item(uploaded_at=1706745599999), True),
        ("uploaded_at < 2024-01-31T10:00:00+01:00", _item(uploaded_at="2024-01-31T09:00:00Z"),
         False),
        # Metadata: numbers, text, nested objects, dotted keys, lists.
        ("metadata.frame > 2.5", _item(metadata={"frame": 3}), True),
        ("metadata.frame = 3", _item(metadata={"frame": 3}), True),
        ('metadata.frame = "3"', _item(metadata={"frame": 3}), False),
        ("metadata.gps.lat > 48", _item(metadata={"gps": {"lat": 48.5}}), True),
        ("metadata.gps.lat > 48", _item(metadata={"gps.lat": 48.5}), True),
        ("metadata.tags = b", _item(metadata={"tags": ["a", "b"]}), True),
        ("metadata.tags != b", _item(metadata={"tags": ["a", "b"]}), False),
        ("metadata.flag = true", _item(metadata={"flag": True}), True),
    ],
)  # fmt: skip
def test_semantics(query: str, item: dict[str, Any], expected: bool) -> None:
    assert evaluate(parse(query), item) is expected


def test_score_bands_cover_the_score_range_without_gaps_or_overlap() -> None:
    assert set(BAND_RANGES) == set(Band)
    ranges = sorted(BAND_RANGES.values())
    assert ranges[0][0] == f.SCORE_MIN
    assert ranges[-1][1:] == (f.SCORE_MAX, True)
    for (_, high, inclusive), (next_low, _, _) in pairwise(ranges):
        assert (high, inclusive) == (next_low, False)


def _box(label: str, width: float, height: float, **extra: Any) -> dict[str, Any]:
    return {"label": label, "bbox": {"x1": 10, "y1": 10, "x2": 10 + width, "y2": 10 + height},
            **extra}  # fmt: skip


THREE_CARS = _objects(_car(0.9), _car(0.85), _car(0.3), _walker(0.7))


@pytest.mark.parametrize(
    ("query", "item", "expected"),
    [
        # Each counted prediction satisfies the whole inside on its own.
        ("count(object_prefix:car) = 3", THREE_CARS, True),
        ("count(object_prefix:car AND score >= 0.8) = 2", THREE_CARS, True),
        ("count(object_prefix:car AND score >= 0.8) >= 3", THREE_CARS, False),
        ("count(object_prefix:car) > 2", THREE_CARS, True),
        ("count(object_prefix:car) < 3", THREE_CARS, False),
        ("count(object_prefix:car) <= 3", THREE_CARS, True),
        ("count(object_prefix:car) != 3", THREE_CARS, False),
        ("count(object_prefix:car OR object_prefix:pedestrian) = 4", THREE_CARS, True),
        ("count(NOT object_prefix:car) = 1", THREE_CARS, True),
        # Without a label: predictions of both kinds are counted.
        ("count(score >= 0.7) = 3", _item(object_predictions=[_car(0.9), _walker(0.7)],
                                         image_predictions=[{"label": "day", "score": 0.8}]),
         True),
        # `= 0` and `<` match items without any prediction, or without that one.
        ("count(object_prefix:pedestrian) = 0", _item(), True),
        ("count(object_prefix:pedestrian) < 1", _objects(_car(0.9)), True),
        ("count(object_prefix:pedestrian) = 0", THREE_CARS, False),
        ("count(object_prefix:car) >= 0", _item(), True),
        ("count(object_prefix:car) < 0", THREE_CARS, False),
        # Rejected predictions are not counted unless the inside mentions status.
        ("count(object_prefix:car) = 1", _objects(_car(0.9), _car(0.8, status="rejected")),
         True),
        ("count(object_prefix:car AND status != pending) = 1",
         _objects(_car(0.9), _car(0.8, status="rejected")), True),
        ("count(object_prefix:car AND status != accepted) = 2",
         _objects(_car(0.9), _car(0.8, status="rejected")), True),
        # A modified prediction is counted by its current label.
        ("count(object_prefix:truck) = 0",
         _objects(_car(0.9, status="modified", original_label="truck")), True),
        # A count is a condition: it combines with item fields and other conditions.
        ("count(object_prefix:car) >= 2 AND dataset = train", THREE_CARS, False),
        ("count(object_prefix:car) >= 2 OR dataset = train", THREE_CARS, True),
        ("NOT count(object_prefix:car) >= 2", THREE_CARS, False),
        # Attributes outside a count never bind into it: here "some prediction below 0.5".
        ("count(object_prefix:pedestrian) >= 1 AND score < 0.5", THREE_CARS, True),
        # Coverage: an item field, set even where the training set predicted nothing.
        ("tagged_by = model_v3", _item(tagged_by=["model_v1", "model_v3"]), True),
        ("NOT tagged_by = model_v3", _item(tagged_by=["model_v1"]), True),
        ("NOT tagged_by = model_v3", _item(), True),
        ("tagged_by = model_v1 AND object_prefix:car", THREE_CARS | {"tagged_by": ["model_v1"]},
         True),
        # Box geometry, derived from the box when the item is written.
        ("object_prefix:car AND box_area < 1024", _objects(_box("car", 40, 20)), True),
        ("object_prefix:car AND box_area < 1024", _objects(_box("car", 40, 40)), False),
        ("object_prefix:car AND box_width = 40 AND box_height = 20",
         _objects(_box("car", 40, 20)), True),
        # One and the same box: a small box and a large car are not a small car.
        ("object_prefix:car AND box_area < 1024",
         _objects(_box("car", 100, 100), _box("pedestrian", 10, 10)), False),
        ("box_area < 1024", _objects(_box("car", 100, 100), _box("pedestrian", 10, 10)), True),
        # relative_area needs the image size; without it the field is absent.
        ("relative_area >= 0.5", _item(width=100, height=100,
                                       object_predictions=[_box("car", 80, 80)]), True),
        ("relative_area >= 0", _objects(_box("car", 80, 80)), False),
        ("NOT relative_area >= 0.5", _objects(_box("car", 80, 80)), True),
        # A box past the image's edges covers all of it, not more.
        ("relative_area = 1", _item(width=10, height=10,
                                    object_predictions=[_box("car", 20, 20)]), True),
        # Unbound geometry talks about objects only: an image prediction has no box.
        ("NOT box_area < 10", _item(image_predictions=[{"label": "day", "score": 0.8}]), False),
        ("count(box_area >= 0) = 1", _objects(_box("car", 5, 5), _car(0.9)), True),
    ],
)  # fmt: skip
def test_counts_coverage_and_geometry(query: str, item: dict[str, Any], expected: bool) -> None:
    assert evaluate(parse(query), item) is expected
