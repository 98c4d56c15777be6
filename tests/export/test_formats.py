"""The export writers and the streaming ZIP, without Elasticsearch: what each format holds,
read back by well-kept readers (``zipfile``, the importer's own record parser)."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest

from export.formats import float32, make_writer, probability
from export.spec import Content, ExportFormat, ExportSpec
from export.zipstream import ZipStream
from indexer.importer import parse_record
from indexer.score_scale import ScoreScale, to_signed
from store.documents import prepare_item

BOX = {"x1": 10.0, "y1": 20.0, "x2": 60.0, "y2": 120.0}


def _items() -> list[dict[str, Any]]:
    return [
        prepare_item(
            {
                "item_id": "cam1/0001.png",
                "dataset": "cam1",
                "uri": "file:///data/cam1/0001.png",
                "width": 200,
                "height": 400,
                "metadata": {"camera": "front"},
                "image_predictions": [
                    {
                        "id": "w",
                        "label": "weather_clear",
                        "score": 0.9,
                        "model": "clip",
                        "training_set": "v1",
                        "status": "accepted",
                    },
                ],
                "object_predictions": [
                    {
                        "id": "c",
                        "label": "car",
                        "score": 0.8,
                        "model": "det",
                        "bbox": BOX,
                        "training_set": "v1",
                        "status": "pending",
                    },
                    {
                        "id": "p",
                        "label": "pedestrian",
                        "score": -0.2,
                        "model": "det",
                        "bbox": BOX,
                        "training_set": "v1",
                        "status": "rejected",
                    },
                    {
                        "id": "m",
                        "label": "car_bus",
                        "original_label": "car",
                        "score": 0.3,
                        "model": "det",
                        "bbox": {"x1": 0, "y1": 0, "x2": 400, "y2": 10},
                        "training_set": "v2",
                        "status": "modified",
                    },
                ],
            }
        ),
        prepare_item({"item_id": "cam1/0002.png", "dataset": "cam1"}),
    ]


def _zip(spec: ExportSpec, items: list[dict[str, Any]]) -> tuple[zipfile.ZipFile, Any]:
    buffer = io.BytesIO()
    writer = make_writer(spec, out=buffer.write)
    for item in items:
        writer.add(item)
    manifest = writer.finish()
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    assert archive.testzip() is None  # every member's CRC checks
    return archive, manifest


def test_zip_stream_is_read_by_zipfile_with_many_members() -> None:
    buffer = io.BytesIO()
    archive = ZipStream(buffer.write)
    count = 70_000  # more than a classic ZIP's 65,535 members
    for number in range(count):
        archive.add(f"labels/{number}.txt", f"{number}\n".encode(), compress=number % 2 == 0)
    big = archive.open("big.bin")
    blob = random.Random(1).randbytes(3 << 20)
    for start in range(0, len(blob), 1 << 16):
        big.write(blob[start : start + (1 << 16)])
    big.close()
    archive.close()
    read = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    names = read.namelist()
    assert len(names) == count + 1
    assert read.read("labels/69999.txt") == b"69999\n"
    assert read.read("big.bin") == blob
    assert read.testzip() is None


def test_jsonl_lines_are_importer_records() -> None:
    out = io.BytesIO()
    spec = ExportSpec("dataset = cam1", ExportFormat.JSONL)
    writer = make_writer(spec, out=out.write)
    for item in _items():
        writer.add(item)
    manifest = writer.finish()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["item_id"] for line in lines] == ["cam1/0001.png", "cam1/0002.png"]
    first = lines[0]
    assert first["uri"] == "file:///data/cam1/0001.png"
    assert first["metadata"] == {"camera": "front"}
    # Rejected predictions are not exported; the modified one is, with its current label.
    assert [p["label"] for p in first["object_predictions"]] == ["car", "car_bus"]
    assert first["object_predictions"][0] == {
        "label": "car",
        "score": 0.8,
        "model": "det",
        "bbox": BOX,
    }
    # The importer takes every line as it is (unknown fields would fail it).
    parsed = parse_record(first, dataset=None, model="import")
    assert [p["label"] for p in parsed.object_predictions] == ["car", "car_bus"]
    assert [p["score"] for p in parsed.image_predictions] == [0.9]
    assert manifest["items"] == 2
    assert manifest["predictions"] == {"image": 1, "object": 2}
    assert manifest["content"] == "predictions"


def test_reviewed_content_is_accepted_and_modified_only() -> None:
    out = io.BytesIO()
    spec = ExportSpec("x", ExportFormat.JSONL, content=Content.REVIEWED)
    writer = make_writer(spec, out=out.write)
    writer.add(_items()[0])
    line = json.loads(out.getvalue())
    assert [p["label"] for p in line["image_predictions"]] == ["weather_clear"]
    assert [p["label"] for p in line["object_predictions"]] == ["car_bus"]
    assert "reviewed labels" in writer.finish()["content_means"]


def test_training_set_narrows_the_predictions() -> None:
    out = io.BytesIO()
    writer = make_writer(ExportSpec("x", ExportFormat.JSONL, training_set="v2"), out=out.write)
    writer.add(_items()[0])
    line = json.loads(out.getvalue())
    assert line["image_predictions"] == []
    assert [p["label"] for p in line["object_predictions"]] == ["car_bus"]


def test_coco_bundle() -> None:
    archive, manifest = _zip(ExportSpec("dataset = cam1", ExportFormat.COCO), _items())
    assert archive.namelist() == ["annotations.json", "results.json", "export.json"]
    dataset = json.loads(archive.read("annotations.json"))
    assert dataset["info"]["autotag"]["content"] == "predictions"
    assert dataset["info"]["autotag"]["query"] == "dataset = cam1"
    assert [image["file_name"] for image in dataset["images"]] == ["cam1/0001.png", "cam1/0002.png"]
    assert dataset["images"][0]["autotag_uri"] == "file:///data/cam1/0001.png"
    assert dataset["categories"] == [
        {"id": 1, "name": "car", "supercategory": "car"},
        {"id": 2, "name": "car_bus", "supercategory": "car"},
    ]
    car, bus = dataset["annotations"]
    assert car["bbox"] == [10.0, 20.0, 50.0, 100.0]
    assert car["area"] == 5000.0
    assert car["score"] == probability(0.8)
    assert to_signed(car["score"], ScoreScale.PROBABILITY) == float32(0.8)
    assert bus["autotag"] == {"id": "m", "training_set": "v2", "status": "modified"}
    results = json.loads(archive.read("results.json"))
    assert results == [
        {key: annotation[key] for key in ("image_id", "category_id", "bbox", "score")}
        for annotation in dataset["annotations"]
    ]
    assert json.loads(archive.read("export.json")) == manifest
    assert manifest["skipped"] == {"image predictions (no place in COCO detections)": 1}


def test_probability_scores_come_back_exactly() -> None:
    rng = random.Random(7)
    scores = [-1.0, 1.0, 0.0, 0.1, -0.7, 2.0**-29, -(2.0**-29)]
    scores += [rng.uniform(-1, 1) for _ in range(20_000)]
    for score in scores:
        assert to_signed(probability(score), ScoreScale.PROBABILITY) == float32(score), score


def test_yolo_bundle(tmp_path: Path) -> None:
    spec = ExportSpec("dataset = cam1", ExportFormat.YOLO)
    items = [*_items(), prepare_item({"item_id": "cam1/0001.jpg", "width": 10, "height": 10})]
    writer = make_writer(spec, folder=tmp_path / "out")
    for item in items:
        writer.add(item)
    manifest = writer.finish()
    root = tmp_path / "out"
    assert (root / "classes.txt").read_text() == "car\ncar_bus\n"
    assert (root / "images.txt").read_text() == "./images/cam1/0001.png\n"
    assert (root / "sources.tsv").read_text() == (
        "./images/cam1/0001.png\tfile:///data/cam1/0001.png\n"
    )
    lines = (root / "labels/cam1/0001.txt").read_text().splitlines()
    # car: x 10..60 of 200, y 20..120 of 400; bus: clipped to the image (x2 400 > 200).
    assert lines == [
        "0 0.175000 0.175000 0.250000 0.250000",
        "1 0.500000 0.012500 1.000000 0.025000",
    ]
    assert '  1: "car_bus"' in (root / "data.yaml").read_text()
    assert manifest["skipped"] == {
        "image predictions (no place in YOLO detections)": 1,
        "items whose label file another item already has": 1,
        "items without width and height": 1,
    }
    assert manifest["items"] == 1
    assert json.loads((root / "export.json").read_text()) == manifest


@pytest.mark.parametrize("fmt", [ExportFormat.COCO, ExportFormat.YOLO])
def test_bundles_as_zip_and_folder_hold_the_same_files(fmt: ExportFormat, tmp_path: Path) -> None:
    spec = ExportSpec("q", fmt)
    archive, _ = _zip(spec, _items())
    writer = make_writer(spec, folder=tmp_path)
    for item in _items():
        writer.add(item)
    writer.finish()
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(archive.namelist()) == on_disk
    for name in on_disk:
        if name != "export.json" and name != "annotations.json":  # timestamps differ
            assert archive.read(name) == (tmp_path / name).read_bytes(), name


def test_finishing_hands_on_the_spooled_parts_in_steps() -> None:
    """The end of a bundle (COCO's spooled images and results, the ZIP directory) comes in
    steps of at most a mebibyte before compression, never gathered whole: what keeps a
    streamed export's memory flat."""
    from indexer.prediction_generator import generate
    from store.writer import merge_item

    buffer = bytearray()
    writer = make_writer(ExportSpec("q", ExportFormat.COCO), out=buffer.extend)
    for entry in generate(6000):
        writer.add(merge_item(None, entry, training_set="t", now="2024-01-01T00:00:00Z"))
    buffer.clear()
    steps = []
    for _ in writer.finishing():
        steps.append(len(buffer))
        buffer.clear()
    steps.append(len(buffer))
    assert sum(steps) > 1_500_000  # there were 1.5 MB (compressed) to hand on...
    assert max(steps) < 400_000  # ...and no step carried more than a fifth of it
