"""Import mode: JSONL and COCO results, through the writer, bad records reported one by one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from cli.indexing import main
from indexer.importer import (
    RecordError,
    parse_record,
    read_coco,
    read_jsonl,
    run_import,
    to_signed,
)
from indexer.report import Failure
from indexer.score_scale import ScoreScale
from indexer.taxonomy import load_taxonomy, normalise_label
from search import parse, translate
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
    batch = read_coco(
        *_coco(tmp_path),
        taxonomy=taxonomy,
        dataset="fleet",
        score_threshold=0.5,
        taxonomy_only=True,
        score_scale=ScoreScale.SIGNED,
    )
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
    assert (batch.labels.dropped, batch.below_threshold) == (1, 1)
    assert not batch.labels.new
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


# --- labels and score scales (issue 20) ----------------------------------------------------


@pytest.mark.parametrize(
    ("probability", "signed"), [(0.5, 0.0), (1.0, 1.0), (0.0, -1.0), (0.9, 0.8), (0.75, 0.5)]
)
def test_the_probability_scale_maps_p_to_2p_minus_1(probability: float, signed: float) -> None:
    assert to_signed(probability, ScoreScale.PROBABILITY) == signed


def test_the_signed_scale_stores_scores_as_given() -> None:
    assert to_signed(-0.4, ScoreScale.SIGNED) == -0.4
    assert to_signed(0.5, ScoreScale.SIGNED) == 0.5


@pytest.mark.parametrize(
    ("score", "scale", "message"),
    [
        (1.5, ScoreScale.PROBABILITY, "not a probability in"),
        (-0.1, ScoreScale.PROBABILITY, "not a probability in"),
        (-1.5, ScoreScale.SIGNED, r"not in \[-1, 1\]"),
        (float("nan"), ScoreScale.SIGNED, "not a number"),
        ("0.5", ScoreScale.SIGNED, "not a number"),
        (True, ScoreScale.PROBABILITY, "not a number"),
    ],
)
def test_a_score_off_its_scale_is_a_record_error(
    score: Any, scale: ScoreScale, message: str
) -> None:
    with pytest.raises(RecordError, match=message):
        to_signed(score, scale)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("traffic light", "traffic_light"),
        ("Traffic  Light ", "traffic_light"),
        ("fire-hydrant", "fire_hydrant"),
        ("car_SUV", "car_suv"),
        ("__x__y__", "x_y"),
        ("weather_clear", "weather_clear"),
    ],
)
def test_normalise_label(name: str, label: str) -> None:
    assert normalise_label(name) == label


def _coco80(tmp_path: Path) -> tuple[Path, Path]:
    """A COCO-80 style results file: categories the taxonomy maps, and some it does not."""
    images = {
        "images": [
            {"id": 1, "file_name": "1.jpg", "width": 64, "height": 64},
            {"id": 2, "file_name": "2.jpg", "width": 64, "height": 64},
            {"id": 3, "file_name": "3.jpg", "width": 64, "height": 64},
        ],
        "categories": [
            {"id": 3, "name": "car"},
            {"id": 6, "name": "bus"},
            {"id": 10, "name": "traffic light"},
            {"id": 11, "name": "fire hydrant"},
            {"id": 18, "name": "dog"},
        ],
    }
    results = [
        {"image_id": 1, "category_id": 18, "bbox": [1, 1, 10, 10], "score": 0.95},
        {"image_id": 1, "category_id": 6, "bbox": [2, 2, 30, 20], "score": 0.5},
        {"image_id": 2, "category_id": 11, "bbox": [0, 0, 5, 9], "score": 0.75},
        {"image_id": 2, "category_id": 3, "bbox": [0, 0, 8, 8], "score": 1.0},
        {"image_id": 3, "category_id": 3, "bbox": [0, 0, 8, 8], "score": 1.5},  # off the scale
        {"image_id": 3, "category_id": 18, "bbox": [0, 0, 8, 8], "score": 0.9},
    ]
    (tmp_path / "images.json").write_text(json.dumps(images))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path / "results.json", tmp_path / "images.json"


def _objects(batch: Any) -> dict[str, list[tuple[str, float]]]:
    return {
        e.item_id: [(p["label"], p["score"]) for p in e.object_predictions]
        for e in batch.entries
        if isinstance(e, ItemPredictions)
    }


def test_coco_keeps_new_labels_as_probabilities_by_default(tmp_path: Path) -> None:
    batch = read_coco(*_coco80(tmp_path), taxonomy=load_taxonomy(), dataset="pets")
    objects = _objects(batch)
    failures = [e for e in batch.entries if isinstance(e, Failure)]

    assert objects == {
        "pets/1.jpg": [("dog", pytest.approx(0.9)), ("car_bus", 0.0)],  # bus: the taxonomy's
        "pets/2.jpg": [("fire_hydrant", 0.5), ("car", 1.0)],
    }
    # image 3's 1.5 is no probability: the whole item fails, with the reason
    assert [(e.item_id, e.stage) for e in failures] == [("pets/3.jpg", "source")]
    assert "1.5 is not a probability in [0, 1]" in failures[0].reason
    assert batch.scale is ScoreScale.PROBABILITY
    assert dict(batch.labels.new) == {"dog": 1, "fire_hydrant": 1}
    notes = "\n".join(batch.summary_notes())
    assert "new labels (not in the taxonomy): 2 (dog, fire_hydrant)" in notes
    assert "score scale: probability" in notes


def test_coco_category_names_are_normalised_when_the_taxonomy_does_not_map_them(
    tmp_path: Path,
) -> None:
    # no object_classes: `traffic light` reaches the store by normalisation alone
    unmapped = dataclasses.replace(load_taxonomy(), object_classes={})
    results_path, images_path = _coco80(tmp_path)
    results = json.loads(results_path.read_text())
    results.append({"image_id": 1, "category_id": 10, "bbox": [0, 0, 2, 6], "score": 0.6})
    results_path.write_text(json.dumps(results))
    batch = read_coco(results_path, images_path, taxonomy=unmapped)
    labels = [label for label, _ in _objects(batch)["1.jpg"]]
    assert labels == ["dog", "bus", "traffic_light"]
    assert {"dog", "bus", "traffic_light"} <= set(batch.labels.new)


def test_coco_taxonomy_only_drops_new_labels(tmp_path: Path) -> None:
    batch = read_coco(*_coco80(tmp_path), taxonomy=load_taxonomy(), taxonomy_only=True)
    assert _objects(batch) == {"1.jpg": [("car_bus", 0.0)], "2.jpg": [("car", 1.0)]}
    assert (batch.labels.dropped, dict(batch.labels.new)) == (2, {})
    assert "2 prediction(s) dropped: label not in the taxonomy" in "\n".join(batch.summary_notes())


def test_jsonl_labels_are_normalised_and_scores_read_on_the_chosen_scale(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "item_id": "a",
                "image_predictions": [
                    {"label": "Weather Rain", "score": 0.5},
                    {"label": "lens flare", "score": 1.0},
                ],
                "object_predictions": [{"label": "dog", "score": 0.75, "bbox": [0, 0, 1, 1]}],
            },
            {"item_id": "b", "image_predictions": [{"label": "weather_fog", "score": -0.2}]},
        ],
    )
    writer = MemoryWriter()
    batch = read_jsonl(path, score_scale=ScoreScale.PROBABILITY)
    summary = run_import(batch, writer)

    image = [(p["label"], p["score"]) for p in writer.items["a"].image_predictions]
    assert image == [("weather_rain", 0.0), ("lens_flare", 1.0)]
    assert [(p["label"], p["score"]) for p in writer.items["a"].object_predictions] == [
        ("dog", 0.5)
    ]
    assert "b" not in writer.items  # -0.2 is no probability: the line fails
    assert [f.item_id for f in summary.failures] == ["b"]
    assert "not a probability" in summary.failures[0].reason
    assert dict(batch.labels.new) == {"lens_flare": 1, "dog": 1}


def test_jsonl_defaults_to_the_signed_scale_and_can_keep_only_taxonomy_labels(
    tmp_path: Path,
) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "item_id": "a",
                "image_predictions": [
                    {"label": "weather_fog", "score": -0.2},
                    {"label": "lens_flare", "score": 0.3},
                ],
            }
        ],
    )
    writer = MemoryWriter()
    batch = read_jsonl(path, taxonomy_only=True)
    run_import(batch, writer)
    assert [(p["label"], p["score"]) for p in writer.items["a"].image_predictions] == [
        ("weather_fog", -0.2)
    ]
    assert batch.scale is ScoreScale.SIGNED
    notes = "\n".join(batch.summary_notes())
    assert "score scale: signed" in notes
    assert "1 prediction(s) dropped: label not in the taxonomy" in notes


@pytest.mark.es
def test_cli_coco80_import_keeps_dog_and_bus_searchable(
    tmp_path: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ES_URL", es_url)
    results, images = _coco80(tmp_path)
    argv = ["import", str(results), "--coco-images", str(images), "--dataset", "pets"]
    argv += ["--training-set", "coco80", "--index", item_index]
    assert main([*argv, "--failures-file", str(tmp_path / "failures.jsonl")]) == 0
    captured = capsys.readouterr()
    assert "new labels (not in the taxonomy): 2 (dog, fire_hydrant)" in captured.err
    assert "score scale: probability" in captured.err
    es.indices.refresh(index=item_index)

    def ids(query: str) -> list[str]:
        found = es.search(index=item_index, query=translate(parse(query)), source_includes=["_id"])
        return sorted(hit["_id"] for hit in found["hits"]["hits"])

    assert ids("object_prefix:dog") == ["pets/1.jpg"]
    assert ids("object_prefix:dog AND score = high") == ["pets/1.jpg"]  # 0.95 -> 0.9
    assert ids("object_prefix:car_bus AND score = low") == ["pets/1.jpg"]  # 0.5 -> 0.0
    assert ids("object_prefix:fire_hydrant AND score = medium") == ["pets/2.jpg"]  # 0.75 -> 0.5
    assert ids('object_prefix:"traffic light"') == []
    assert es.count(index=item_index)["count"] == 2  # pets/3.jpg failed: its 1.5
