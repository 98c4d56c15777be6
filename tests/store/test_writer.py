"""The prediction writer against a real node: merge rules, skipping, force, failures."""

from __future__ import annotations

import re
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from store.writer import ItemPredictions, PredictionWriter, StoredItem

pytestmark = pytest.mark.es

BOX = {"x1": 1.0, "y1": 2.0, "x2": 30.0, "y2": 40.0}


def _entry(item_id: str, car_score: float = 0.7, **item: Any) -> ItemPredictions:
    return ItemPredictions(
        item={"item_id": item_id, "dataset": "d", **item},
        image_predictions=[{"label": "weather_clear", "score": 0.9, "model": "clip"}],
        object_predictions=[{"label": "car", "score": car_score, "model": "det", "bbox": BOX}],
    )


def _get(es: Elasticsearch, index: str, item_id: str) -> dict[str, Any]:
    source: dict[str, Any] = es.get(index=index, id=item_id)["_source"]
    return source


def test_new_items_are_created_with_derived_fields(es: Elasticsearch, item_index: str) -> None:
    writer = PredictionWriter(es, item_index, training_set="v1", refresh=True)
    result = writer.write([_entry("a"), _entry("b")])
    assert (result.written, result.skipped, result.predictions, result.failed) == (2, 0, 4, [])
    doc = _get(es, item_index, "a")
    assert doc["tagged_by"] == ["v1"]
    assert doc["autotag_status"] == ["pending"]
    car = doc["object_predictions"][0]
    assert car["training_set"] == "v1"
    assert car["status"] == "pending"
    assert car["label_prefixes"] == ["car"]
    assert car["id"]
    assert car["created_at"] == doc["updated_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", car["created_at"])


def test_already_tagged_items_are_skipped_unless_forced(es: Elasticsearch, item_index: str) -> None:
    PredictionWriter(es, item_index, training_set="v1", refresh=True).write([_entry("a", 0.7)])
    again = PredictionWriter(es, item_index, training_set="v1", refresh=True)
    assert again.already_tagged(["a", "zzz"]) == {"a"}
    assert again.write([_entry("a", 0.1)]).skipped == 1
    assert _get(es, item_index, "a")["object_predictions"][0]["score"] == 0.7
    forced = PredictionWriter(es, item_index, training_set="v1", force=True, refresh=True)
    assert forced.write([_entry("a", 0.1)]).written == 1
    cars = _get(es, item_index, "a")["object_predictions"]
    assert [c["score"] for c in cars] == [0.1]


def test_force_never_replaces_a_review_and_keeps_other_training_sets(
    es: Elasticsearch, item_index: str
) -> None:
    PredictionWriter(es, item_index, training_set="v1", refresh=True).write([_entry("a")])
    PredictionWriter(es, item_index, training_set="v2", refresh=True).write([_entry("a", 0.3)])
    doc = _get(es, item_index, "a")
    assert sorted(p["training_set"] for p in doc["object_predictions"]) == ["v1", "v2"]
    assert doc["tagged_by"] == ["v1", "v2"]
    # A reviewer accepts v1's car.
    for p in doc["object_predictions"]:
        if p["training_set"] == "v1":
            p["status"] = "accepted"
    es.index(index=item_index, id="a", document=doc, refresh=True)
    PredictionWriter(es, item_index, training_set="v1", force=True, refresh=True).write(
        [_entry("a", 0.55)]
    )
    cars = _get(es, item_index, "a")["object_predictions"]
    v1 = [c for c in cars if c["training_set"] == "v1"]
    assert [(c["status"], c["score"]) for c in v1] == [("accepted", 0.7)]
    assert [c["score"] for c in cars if c["training_set"] == "v2"] == [0.3]


def test_bad_predictions_fail_only_their_item(es: Elasticsearch, item_index: str) -> None:
    bad = ItemPredictions(item={"item_id": "bad"}, image_predictions=[{"label": "x", "score": 3}])
    duplicate = _entry("a")
    result = PredictionWriter(es, item_index, training_set="v1", refresh=True).write(
        [_entry("a"), bad, duplicate, _entry("c")]
    )
    assert result.written == 2
    assert sorted(item_id for item_id, _ in result.failed) == ["a", "bad"]
    assert "not in [-1, 1]" in dict(result.failed)["bad"]
    assert es.count(index=item_index)["count"] == 2


def test_a_concurrent_change_is_merged_not_lost(es: Elasticsearch, item_index: str) -> None:
    writer = PredictionWriter(es, item_index, training_set="v1", refresh=True)
    writer.write([_entry("a")])
    original_mget = es.mget
    calls = {"n": 0}

    def mget_then_interfere(**kwargs: Any) -> Any:
        response = original_mget(**kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # someone else writes between our read and our write
            doc = _get(es, item_index, "a")
            doc["metadata"] = {"note": "edited concurrently"}
            es.index(index=item_index, id="a", document=doc, refresh=True)
        return response

    forced = PredictionWriter(es, item_index, training_set="v2", refresh=True)
    forced.client = es.options()
    forced.client.mget = mget_then_interfere  # type: ignore[method-assign]
    result = forced.write([_entry("a", 0.2)])
    assert result.written == 1
    assert result.retries == 1
    doc = _get(es, item_index, "a")
    assert doc["metadata"] == {"note": "edited concurrently"}
    assert sorted(doc["tagged_by"]) == ["v1", "v2"]


def test_items_handed_over_as_read_are_written_back_without_reading(
    es: Elasticsearch, item_index: str
) -> None:
    PredictionWriter(es, item_index, training_set="v1", refresh=True).write(
        [_entry(i) for i in ("kept", "edited", "done")]
    )
    PredictionWriter(es, item_index, training_set="v2", refresh=True).write([_entry("done")])
    read = {
        i: StoredItem.from_hit(es.get(index=item_index, id=i).body)
        for i in ("kept", "edited", "done")
    }
    # "edited" changes after it was read: its write must conflict, re-read and merge.
    doc = _get(es, item_index, "edited")
    doc["metadata"] = {"note": "edited after the read"}
    es.index(index=item_index, id="edited", document=doc, refresh=True)
    read_ids: list[list[str]] = []
    original_mget = es.mget

    def counted_mget(**kwargs: Any) -> Any:
        read_ids.append(list(kwargs["ids"]))
        return original_mget(**kwargs)

    writer = PredictionWriter(es, item_index, training_set="v2", refresh=True)
    writer.client = es.options()
    writer.client.mget = counted_mget  # type: ignore[method-assign]
    result = writer.write(
        [
            ItemPredictions(e.item, e.image_predictions, e.object_predictions, stored=read[i])
            for i, e in ((i, _entry(i, 0.3)) for i in ("kept", "edited", "done"))
        ]
    )
    assert (result.written, result.skipped, result.failed) == (2, 1, [])
    assert read_ids == [["edited"]]  # only the item changed since it was read
    for item_id in ("kept", "edited"):
        stored = _get(es, item_index, item_id)
        assert stored["tagged_by"] == ["v1", "v2"]
        cars = {p["training_set"]: p["score"] for p in stored["object_predictions"]}
        assert cars == {"v1": 0.7, "v2": 0.3}
    assert _get(es, item_index, "edited")["metadata"] == {"note": "edited after the read"}
    # Already tagged by v2 when read: skipped, left as it was.
    done = _get(es, item_index, "done")
    assert {p["training_set"]: p["score"] for p in done["object_predictions"]} == {
        "v1": 0.7,
        "v2": 0.7,
    }


def test_an_item_may_carry_several_training_sets(es: Elasticsearch, item_index: str) -> None:
    mixed = ItemPredictions(
        item={"item_id": "m"},
        image_predictions=[
            {"label": "weather_rain", "score": 0.4, "training_set": "v1"},
            {"label": "weather_rain", "score": 0.8, "training_set": "v2"},
        ],
    )
    writer = PredictionWriter(es, item_index, training_set="import", refresh=True)
    assert writer.write([mixed]).predictions == 2
    doc = _get(es, item_index, "m")
    assert sorted(p["training_set"] for p in doc["image_predictions"]) == ["v1", "v2"]
    assert doc["tagged_by"] == ["import", "v1", "v2"]
    assert writer.write([mixed]).skipped == 1


def test_write_many_overlaps_batches_without_losing_or_duplicating(
    es: Elasticsearch, item_index: str
) -> None:
    writer = PredictionWriter(es, item_index, training_set="v1", force=True)
    # Item "a-0" appears in every batch: concurrent batches conflict on it and must merge.
    groups = [[_entry("a-0", 0.1 * b), *(_entry(f"b{b}-{i}") for i in range(30))] for b in range(6)]
    results = list(writer.write_many(groups, in_flight=3))
    assert len(results) == 6
    assert sum(r.written for r in results) == 6 * 31
    assert not any(r.failed for r in results)
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index)["count"] == 1 + 6 * 30
    cars = _get(es, item_index, "a-0")["object_predictions"]
    assert len(cars) == 1  # replaced each time, never duplicated


def test_write_many_splits_batches_into_chunks_and_keeps_batch_order(
    es: Elasticsearch, item_index: str
) -> None:
    writer = PredictionWriter(es, item_index, training_set="v1", batch_size=7)
    # Batches of 1 to 25 items: most span several bulk requests, one is empty, one has a
    # bad prediction, one repeats an id inside the batch.
    groups: list[list[ItemPredictions]] = [
        [_entry(f"g{g}-{i}") for i in range(size)] for g, size in enumerate((25, 1, 0, 14, 9))
    ]
    groups[3][5] = _entry("g3-5", car_score=3.0)
    groups[4].append(_entry("g4-7"))  # same chunk as the first g4-7 (items 7 to 9)
    results = list(writer.write_many(groups, in_flight=2))
    assert [r.written for r in results] == [25, 1, 0, 13, 9]
    assert [[item for item, _ in r.failed] for r in results] == [[], [], [], ["g3-5"], ["g4-7"]]
    assert "not in [-1, 1]" in results[3].failed[0][1]
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index)["count"] == 25 + 1 + 13 + 9


def test_look_alike_detections_get_distinct_ids(es: Elasticsearch, item_index: str) -> None:
    twin = {"label": "car", "score": 0.8, "bbox": BOX}
    entry = ItemPredictions(item={"item_id": "t"}, object_predictions=[twin, dict(twin)])
    PredictionWriter(es, item_index, training_set="v1", refresh=True).write([entry])
    ids = [p["id"] for p in _get(es, item_index, "t")["object_predictions"]]
    assert len(set(ids)) == 2
    assert ids[1] == f"{ids[0]}-1"
