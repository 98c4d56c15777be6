"""Round trips through the real commands and the real node: export a training set's
predictions, import the file into another training set with ``autotag import`` (the existing
importer, with its default score scale), and the predictions are the same.

COCO carries object detections, at the index's float32 precision (what queries see): labels,
boxes and scores come back equal to the float32 of the originals. JSONL carries everything as
stored, bit for bit, image predictions too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from cli.main import main
from export.formats import float32
from store.documents import prepare_item

pytestmark = pytest.mark.es

# Labels the taxonomy keeps as they are (it maps COCO names such as `person` or `bus`).
OBJECT_LABELS = ["car", "pedestrian", "traffic_light", "dog"]
IMAGE_LABELS = ["weather_clear", "time_of_day_night"]


def _items(rng: random.Random) -> list[dict[str, Any]]:
    def box() -> dict[str, float]:
        x, y = rng.uniform(0, 1500), rng.uniform(0, 900)
        return {"x1": x, "y1": y, "x2": x + rng.uniform(0.001, 400), "y2": y + rng.uniform(1, 300)}

    def score() -> float:
        return rng.choice([-1.0, 1.0, 0.0, 0.1, -0.7, rng.uniform(-1, 1), rng.uniform(-1, 1)])

    items = []
    for number in range(40):
        objects = [
            {
                "label": rng.choice(OBJECT_LABELS),
                "score": score(),
                "bbox": box(),
                "training_set": "model_v1",
                "model": "det",
                "status": rng.choice(["pending", "pending", "accepted", "rejected"]),
            }
            for _ in range(rng.randint(0, 5))
        ]
        objects.append(  # another training set's prediction is not part of the export
            {
                "label": "car",
                "score": 0.5,
                "bbox": box(),
                "training_set": "model_v0",
                "model": "old",
            }
        )
        images = [
            {
                "label": rng.choice(IMAGE_LABELS),
                "score": score(),
                "training_set": "model_v1",
                "model": "clip",
            }
            for _ in range(rng.randint(0, 2))
        ]
        items.append(
            prepare_item(
                {
                    "item_id": f"drive{number % 3}/frame_{number:04d}.jpg",
                    "dataset": f"drive{number % 3}",
                    "uri": f"s3://bucket/drive{number % 3}/frame_{number:04d}.jpg",
                    "width": 1920,
                    "height": 1080,
                    "tagged_by": ["model_v1", "model_v0"],
                    "image_predictions": images,
                    "object_predictions": objects,
                }
            )
        )
    return items


@pytest.fixture
def seeded(
    monkeypatch: pytest.MonkeyPatch, es: Elasticsearch, es_url: str, item_index: str
) -> list[dict[str, Any]]:
    monkeypatch.delenv("ES_URL", raising=False)
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    items = _items(random.Random(2024))
    operations: list[dict[str, Any]] = []
    for item in items:
        operations += [{"index": {"_index": item_index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    return items


def _stored(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def _visible(item: dict[str, Any], path: str, training_set: str) -> list[dict[str, Any]]:
    return [
        p
        for p in item.get(path) or ()
        if p.get("training_set") == training_set and p.get("status") != "rejected"
    ]


def _box(bbox: dict[str, float], convert: Any = float) -> tuple[float, ...]:
    return tuple(convert(bbox[side]) for side in ("x1", "y1", "x2", "y2"))


def test_coco_round_trip(
    seeded: list[dict[str, Any]], es: Elasticsearch, item_index: str, tmp_path: Path
) -> None:
    out = tmp_path / "coco"
    query = 'tagged_by = "model_v1"'
    assert (
        main(
            [
                "export",
                query,
                "--format",
                "coco",
                "--training-set",
                "model_v1",
                "-o",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "annotations.json",
        "export.json",
        "results.json",
    ]
    assert json.loads((out / "export.json").read_text())["score_scale"] == "probability"
    failures = tmp_path / "failures.jsonl"
    assert (
        main(
            [
                "import",
                str(out / "results.json"),
                "--coco-images",
                str(out / "annotations.json"),
                "--training-set",
                "copy_v1",
                "--failures-file",
                str(failures),
            ]
        )
        == 0
    )
    assert not failures.exists()

    stored = _stored(es, item_index)
    compared = 0
    for item in seeded:
        after = stored[item["item_id"]]
        original = sorted(
            (p["label"], _box(p["bbox"], float32), float32(p["score"]))
            for p in _visible(item, "object_predictions", "model_v1")
        )
        imported = sorted(
            (p["label"], _box(p["bbox"]), p["score"])
            for p in _visible(after, "object_predictions", "copy_v1")
        )
        assert imported == original, item["item_id"]
        assert "copy_v1" in after["tagged_by"]  # listed even with no detection
        compared += len(original)
    assert compared > 60


def test_jsonl_round_trip_is_exact(
    seeded: list[dict[str, Any]], es: Elasticsearch, item_index: str, tmp_path: Path
) -> None:
    out = tmp_path / "items.jsonl"
    assert (
        main(
            [
                "export",
                'tagged_by = "model_v1"',
                "--format",
                "jsonl",
                "--training-set",
                "model_v1",
                "-o",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "items.jsonl.export.json").read_text())
    assert manifest["items"] == len(seeded)
    assert (
        main(
            [
                "import",
                str(out),
                "--training-set",
                "copy_v2",
                "--failures-file",
                str(tmp_path / "failures.jsonl"),
            ]
        )
        == 0
    )
    stored = _stored(es, item_index)
    for item in seeded:
        after = stored[item["item_id"]]
        assert after["uri"] == item["uri"]
        for path in ("image_predictions", "object_predictions"):
            keys = ("label", "score", "model", "bbox")
            original = [{k: p[k] for k in keys if k in p} for p in _visible(item, path, "model_v1")]
            imported = [{k: p[k] for k in keys if k in p} for p in _visible(after, path, "copy_v2")]
            assert imported == original, (item["item_id"], path)
