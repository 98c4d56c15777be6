"""Ground truth: read from JSONL and COCO instances, written as a named source beside the
predictions (tests against a real node), never mixed with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from indexer.importer import run_import
from indexer.report import Failure
from indexer.truth import read_truth_coco, read_truth_jsonl
from store import schema as f
from store.admin import update_mapping
from store.mapping import index_settings, item_mapping
from store.truth import TruthWriter
from store.writer import ItemPredictions, PredictionWriter


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def _coco(path: Path) -> Path:
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "b.jpg", "width": 640, "height": 480},  # no objects
            {"id": 3, "file_name": "c.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 100], "iscrowd": 1},
            {"id": 3, "image_id": 3, "category_id": 9, "bbox": [0, 0, 1, 1]},
            {"id": 4, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1]},
            {"id": 5, "image_id": 8, "category_id": 9, "bbox": [0, 0, 1, 1]},  # both wrong
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "traffic light"}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_coco_instances_become_annotated_items(tmp_path: Path) -> None:
    batch = read_truth_coco(_coco(tmp_path / "val.json"), source="coco_val", dataset="drives")
    entries = list(batch.entries)
    items = [e for e in entries if isinstance(e, ItemPredictions)]
    failures = [e for e in entries if isinstance(e, Failure)]
    assert [e.item_id for e in items] == ["drives/a.jpg", "drives/b.jpg"]
    a, b = items
    # person -> pedestrian through the taxonomy, like prediction imports; xywh -> corners
    assert list(a.object_predictions) == [
        {"label": "pedestrian", "bbox": {"x1": 10.0, "y1": 20.0, "x2": 40.0, "y2": 60.0},
         "iscrowd": False},
        {"label": "traffic_light", "bbox": {"x1": 0.0, "y1": 0.0, "x2": 100.0, "y2": 100.0},
         "iscrowd": True},
    ]  # fmt: skip
    assert list(b.object_predictions) == []  # an empty image is truth too
    reasons = sorted(failure.reason for failure in failures)
    assert any("category_id 9" in r for r in reasons), reasons
    assert "1 annotation(s) for image id 7 not in the image list" in reasons
    # a failed annotation of an unlisted image is one of its annotations too (it said 0)
    assert "1 annotation(s) for image id 8 not in the image list" in reasons


def test_jsonl_truth_reads_the_synthetic_worlds_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "truth.jsonl",
        [
            {"item_id": "s-1", "file": "images/s-1.png", "tags": ["weather_rain", "Glare"],
             "objects": [{"label": "car", "bbox": [1, 2, 3, 4]}]},
            {"item_id": "s-2", "tags": [], "objects": [], "colour": "red"},
            {"item_id": "s-3", "objects": [{"label": "car", "bbox": [1, 2, 3]}]},
            "not an object",
        ],
    )  # fmt: skip
    entries = list(read_truth_jsonl(path, source="world").entries)
    first = entries[0]
    assert isinstance(first, ItemPredictions)
    assert list(first.image_predictions) == [{"label": "weather_rain"}, {"label": "glare"}]
    assert list(first.object_predictions) == [
        {"label": "car", "bbox": {"x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0}, "iscrowd": False}
    ]
    assert [type(e).__name__ for e in entries[1:]] == ["Failure", "Failure", "Failure"]
    assert "unknown field(s): colour" in str(entries[1])


@pytest.mark.es
def test_a_source_is_written_beside_predictions_and_replaced_alone(
    tmp_path: Path, es: Elasticsearch, item_index: str
) -> None:
    predictions = PredictionWriter(es, item_index, training_set="model_v1", refresh=True)
    box = {"x1": 10.0, "y1": 20.0, "x2": 40.0, "y2": 60.0}
    predictions.write(
        [
            ItemPredictions(
                {f.ITEM_ID: "drives/a.jpg"}, (), [{"label": "car", "score": 0.9, "bbox": box}]
            )
        ]
    )
    coco = _coco(tmp_path / "val.json")
    summary = run_import(
        read_truth_coco(coco, source="coco_val", dataset="drives"),
        TruthWriter(es, item_index, source="coco_val", refresh=True),
    )
    assert (summary.tagged, summary.predictions) == (2, 2)
    other = _write(
        tmp_path / "team.jsonl",
        [{"item_id": "drives/a.jpg", "tags": ["weather_rain"], "objects": []}],
    )
    run_import(
        read_truth_jsonl(other, source="team"),
        TruthWriter(es, item_index, source="team", refresh=True),
    )
    a = es.get(index=item_index, id="drives/a.jpg")["_source"]
    assert a[f.TRUTH_SOURCE] == ["coco_val", "team"]
    assert a[f.TAGGED_BY] == ["model_v1"]  # truth never tags
    assert [p["label"] for p in a[f.OBJECT_PREDICTIONS]] == ["car"]
    assert [(t["label"], t["source"], t["iscrowd"]) for t in a[f.TRUTH_OBJECTS]] == [
        ("pedestrian", "coco_val", False),
        ("traffic_light", "coco_val", True),
    ]
    assert a[f.TRUTH_OBJECTS][1]["label_prefixes"] == ["traffic", "traffic_light"]
    assert [(t["label"], t["source"]) for t in a[f.TRUTH_IMAGES]] == [("weather_rain", "team")]
    assert a[f.WIDTH] == 640  # filled in from the COCO file: the item had no size
    b = es.get(index=item_index, id="drives/b.jpg")["_source"]
    assert (b[f.TRUTH_SOURCE], b[f.TRUTH_OBJECTS]) == (["coco_val"], [])

    # Importing coco_val again, now without the crowd region, replaces only coco_val's boxes.
    data = json.loads(coco.read_text())
    data["annotations"] = [x for x in data["annotations"] if x["id"] == 1]
    coco.write_text(json.dumps(data))
    run_import(
        read_truth_coco(coco, source="coco_val", dataset="drives"),
        TruthWriter(es, item_index, source="coco_val", refresh=True),
    )
    a = es.get(index=item_index, id="drives/a.jpg")["_source"]
    assert [t["label"] for t in a[f.TRUTH_OBJECTS]] == ["pedestrian"]
    assert [t["label"] for t in a[f.TRUTH_IMAGES]] == ["weather_rain"]
    assert a[f.TRUTH_SOURCE] == ["coco_val", "team"]
    assert [p["label"] for p in a[f.OBJECT_PREDICTIONS]] == ["car"]


@pytest.mark.es
def test_an_index_made_before_truth_gets_the_fields(es: Elasticsearch, item_index: str) -> None:
    old = item_mapping()
    for name in (f.TRUTH_SOURCE, f.TRUTH_IMAGES, f.TRUTH_OBJECTS):
        del old["properties"][name]
    del old["properties"][f.OBJECT_PREDICTIONS]["properties"][f.PRED_ORIGINAL_BBOX]
    es.indices.delete(index=item_index)
    es.indices.create(index=item_index, mappings=old, settings=index_settings())
    added = update_mapping(es, item_index)[item_index]
    assert sorted(added) == sorted(
        [
            f.TRUTH_SOURCE,
            f.TRUTH_IMAGES,
            f.TRUTH_OBJECTS,
            f"{f.OBJECT_PREDICTIONS}.{f.PRED_ORIGINAL_BBOX}",
        ]
    )
    assert update_mapping(es, item_index) == {item_index: []}
    props = es.indices.get_mapping(index=item_index)[item_index]["mappings"]["properties"]
    assert props[f.TRUTH_OBJECTS]["type"] == "nested"
    assert props[f.TRUTH_SOURCE]["type"] == "keyword"
    # the put-mapping leaves what was there as it was
    assert props[f.OBJECT_PREDICTIONS]["properties"][f.PRED_SCORE]["type"] == "float"
