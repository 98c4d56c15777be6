"""Import mode: JSONL and COCO results, through the writer, bad records reported one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from cli.indexing import main
from indexer.importer import RecordError, parse_record, read_coco, read_jsonl, run_import
from indexer.report import Failure
from indexer.taxonomy import load_taxonomy
from store.writer import ItemPredictions
from tests.indexer.stubs import MemoryWriter


def _jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


GOOD = {
    "item_id": "a",
    "dataset": "d",
    "width": 10,
    "height": 10,
    "image_predictions": [{"label": "weather_rain", "score": 0.7}],
    "object_predictions": [
        {"label": "car", "score": 0.9, "bbox": [1, 2, 3, 4], "model": "yolo"},
        {"label": "pedestrian", "score": 0.5, "bbox": {"x1": 0, "y1": 0, "x2": 5, "y2": 5}},
    ],
}


def test_parse_record_defaults_model_and_normalises_boxes() -> None:
    entry = parse_record(GOOD, dataset=None, model="ext")
    assert entry.item == {"item_id": "a", "dataset": "d", "width": 10, "height": 10}
    assert entry.image_predictions == [{"label": "weather_rain", "score": 0.7, "model": "ext"}]
    assert entry.object_predictions[0] == {
        "label": "car",
        "score": 0.9,
        "model": "yolo",
        "bbox": {"x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0},
    }


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"dataset": "d"}, "no item_id"),
        ({"item_id": "a", "colour": "red"}, "unknown field"),
        ({"item_id": "a", "image_predictions": {}}, "not a list"),
        ({"item_id": "a", "object_predictions": [{"label": "car", "score": 1}]}, "bbox"),
        (
            {"item_id": "a", "object_predictions": [{"label": "x", "score": 1, "bbox": [1, 2]}]},
            "bbox",
        ),
        (
            {"item_id": "a", "image_predictions": [{"label": "x", "score": 1, "status": "ok"}]},
            "unknown",
        ),
    ],
)
def test_parse_record_rejects(record: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        parse_record(record, dataset=None, model="m")


def test_jsonl_bad_lines_are_failures_and_the_rest_imported(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [GOOD, "{oops", {"item_id": "b"}, {"item_id": "a"}, {"nope": 1}, "", {"item_id": 7}],
    )
    writer = MemoryWriter()

    summary = run_import(read_jsonl(path, dataset="fallback"), writer)

    assert set(writer.items) == {"a", "b", "7"}
    assert writer.items["b"].item["dataset"] == "fallback"
    assert writer.items["a"].item["dataset"] == "d"
    assert (summary.seen, summary.tagged, summary.failed, summary.predictions) == (6, 3, 3, 3)
    reasons = sorted(f.reason for f in summary.failures)
    assert reasons[0].startswith("p.jsonl:2: not JSON")
    assert reasons[1:] == ["p.jsonl:4: duplicate item id", "p.jsonl:5: no item_id"]


def test_jsonl_import_skips_already_imported_unless_forced(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [GOOD, {"item_id": "b"}])
    writer = MemoryWriter()
    run_import(read_jsonl(path), writer)
    assert run_import(read_jsonl(path), writer).skipped == 2
    writer.force = True
    assert run_import(read_jsonl(path), writer).tagged == 2


def _coco(tmp_path: Path) -> tuple[Path, Path]:
    images = {
        "images": [
            {"id": 1, "file_name": "cam/1.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "cam/2.jpg", "width": 100, "height": 50},
            {"id": 3, "file_name": "cam/3.jpg"},
        ],
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
            {"id": 13, "name": "stop sign"},
            {"id": 90, "name": "toothbrush"},
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "score": 0.9},
        {"image_id": 1, "category_id": 13, "bbox": [0, 0, 5, 5], "score": 0.6},
        {"image_id": 1, "category_id": 90, "bbox": [0, 0, 5, 5], "score": 0.99},
        {"image_id": 2, "category_id": 3, "bbox": [1, 1, 2, 2], "score": 0.2},
        {"image_id": 2, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.8},
        {"image_id": 99, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.8},
        {"image_id": 2, "bbox": [1, 1, 4, 4], "score": 0.8},
    ]
    (tmp_path / "images.json").write_text(json.dumps(images))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path / "results.json", tmp_path / "images.json"


def test_coco_results_map_to_taxonomy_labels_and_folder_ids(tmp_path: Path) -> None:
    taxonomy = load_taxonomy()
    batch = read_coco(*_coco(tmp_path), taxonomy=taxonomy, dataset="fleet", score_threshold=0.5)
    entries = [e for e in batch.entries if isinstance(e, ItemPredictions)]
    problems = [e for e in batch.entries if isinstance(e, Failure)]

    assert [e.item_id for e in entries] == ["fleet/cam/1.jpg", "fleet/cam/2.jpg", "fleet/cam/3.jpg"]
    first = entries[0]
    assert first.item == {
        "item_id": "fleet/cam/1.jpg",
        "uri": "cam/1.jpg",
        "dataset": "fleet",
        "width": 100,
        "height": 50,
    }
    labels = [p["label"] for p in first.object_predictions]
    assert labels == [taxonomy.object_classes["person"], taxonomy.object_classes["stop sign"]]
    assert first.object_predictions[0]["bbox"] == {"x1": 10.0, "y1": 5.0, "x2": 30.0, "y2": 35.0}
    assert [p["score"] for p in entries[1].object_predictions] == [0.8]
    assert entries[2].object_predictions == []
    assert batch.dropped == 2  # toothbrush (unmapped) and the 0.2 car
    assert len(problems) == 2  # the result without a category, the unknown image
    assert any("image id 99" in p.reason for p in problems)


@pytest.mark.es
def test_cli_import_jsonl_and_coco_side_by_side(
    tmp_path: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ES_URL", es_url)
    results, images = _coco(tmp_path)
    jsonl = _jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "item_id": "fleet/cam/1.jpg",
                "image_predictions": [{"label": "weather_fog", "score": -0.4}],
            }
        ],
    )
    common = ["--index", item_index, "--failures-file", str(tmp_path / "failures.jsonl")]

    coco_args = [
        "import",
        str(results),
        "--coco-images",
        str(images),
        "--dataset",
        "fleet",
        "--training-set",
        "coco_v1",
        "--score-threshold",
        "0.5",
        *common,
    ]
    assert main(coco_args) == 0
    assert main(["import", str(jsonl), "--training-set", "ext_v1", "--model", "ext", *common]) == 0
    assert "items seen" in capsys.readouterr().out
    es.indices.refresh(index=item_index)

    doc = es.get(index=item_index, id="fleet/cam/1.jpg")["_source"]
    assert {p["training_set"] for p in doc["object_predictions"]} == {"coco_v1"}
    assert [(p["label"], p["score"], p["model"]) for p in doc["image_predictions"]] == [
        ("weather_fog", -0.4, "ext")
    ]
    assert es.count(index=item_index)["count"] == 3
    assert main(coco_args) == 0
    assert "skipped" in capsys.readouterr().out
