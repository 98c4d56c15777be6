"""A small world for the review page: real images on disk, their items in a real index.

The images are synthetic driving scenes (``indexer.synthetic``), written as PNG files. Their
predictions are made from each scene's ground truth, without running the models (which take
half a minute to load; ``autotag index`` has its own tests): every true tag and object, with a
score, plus a few wrong guesses, jittered boxes, all pending, written through the product's
writer (ids, derived fields) under one training set. The folder is recorded as an image root,
as ``autotag index`` records it. One extra item carries a hostile label, to show it as text.
:func:`add_evaluation` adds what an evaluation needs: a second, worse training set and the
scenes' ground truth imported as a named source.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from elasticsearch import Elasticsearch

from indexer.importer import run_import
from indexer.synthetic.dataset import (
    GROUND_TRUTH_FILE,
    MANIFEST_FILE,
    read_ground_truth,
    write_dataset,
)
from indexer.synthetic.world import DEFAULT_SIZE
from indexer.truth import read_truth_jsonl
from store import schema as f
from store.image_roots import record_image_roots
from store.truth import TruthWriter
from store.writer import ItemPredictions, PredictionWriter

TRAINING_SET: Final = "world_v1"
SHIFTED_SET: Final = "world_shifted"
TRUTH_SOURCE: Final = "world"
XSS_LABEL: Final = "<img src=x onerror=alert(1)>"
XSS_ITEM: Final = "hostile-item"
_WRONG_TAGS: Final = ("weather_snow", "scene_rural", "glare", "weather_fog")


@dataclass(frozen=True)
class World:
    folder: Path
    item_ids: list[str]


def _score(rng: random.Random, right: bool) -> float:
    return round(rng.uniform(0.55, 0.99) if right else rng.uniform(-0.9, 0.4), 3)


def write_images(folder: Path, images: int = 60, seed: int = 3) -> Path:
    """Write ``images`` scenes into ``folder``, once (the items are loaded per index)."""
    if not (folder / MANIFEST_FILE).exists():
        write_dataset(folder, images, seed=seed, dataset="drives")
    return folder


def make_world(
    es: Elasticsearch, index: str, folder: Path, images: int = 60, seed: int = 3
) -> World:
    """Scenes in ``folder`` (written if missing) and their items in ``index``."""
    write_images(folder, images, seed)
    truth = read_ground_truth(folder / GROUND_TRUTH_FILE)
    rng = random.Random(seed)
    batch = []
    ids = []
    for line in (folder / MANIFEST_FILE).read_text().splitlines():
        row = json.loads(line)
        scene = truth[row["item_id"]]
        tags = [
            {"label": tag, "score": _score(rng, True), "model": "world"}
            for tag in sorted(scene.tags)
        ]
        tags += [
            {"label": tag, "score": _score(rng, False), "model": "world"}
            for tag in rng.sample(_WRONG_TAGS, 2)
            if tag not in scene.tags
        ]
        objects = []
        for label, (x1, y1, x2, y2) in scene.objects:
            jitter = [rng.uniform(-3, 3) for _ in range(4)]
            box = {
                "x1": round(max(0.0, x1 + jitter[0]), 1),
                "y1": round(max(0.0, y1 + jitter[1]), 1),
                "x2": round(x2 + jitter[2], 1),
                "y2": round(y2 + jitter[3], 1),
            }
            objects.append(
                {"label": label, "score": _score(rng, True), "bbox": box, "model": "world"}
            )
        item: dict[str, Any] = {
            "item_id": row["item_id"],
            "uri": row["uri"],
            "dataset": row["dataset"],
            "width": DEFAULT_SIZE[0],
            "height": DEFAULT_SIZE[1],
            "metadata": row.get("metadata") or {},
        }
        batch.append(ItemPredictions(item, tags, objects))
        ids.append(row["item_id"])
    first = json.loads((folder / MANIFEST_FILE).read_text().splitlines()[0])
    hostile = {
        "item_id": XSS_ITEM,
        "uri": first["uri"],
        "dataset": "drives",
        "width": DEFAULT_SIZE[0],
        "height": DEFAULT_SIZE[1],
        "metadata": {"note": "<script>alert(2)</script>"},
    }
    batch.append(
        ItemPredictions(
            hostile,
            [{"label": XSS_LABEL, "score": 0.9, "model": "world"}],
            [{"label": XSS_LABEL, "score": 0.8, "bbox": {"x1": 10, "y1": 10, "x2": 60, "y2": 50}}],
        )
    )
    writer = PredictionWriter(es, index, training_set=TRAINING_SET)
    result = writer.write(batch)
    assert not result.failed, result.failed
    record_image_roots(es, index, [folder / "images"])
    es.indices.refresh(index=index)
    return World(folder, ids)


def add_evaluation(es: Elasticsearch, index: str, folder: Path, shift: float = 0.3) -> None:
    """Beside :data:`TRAINING_SET`: :data:`SHIFTED_SET`, a worse model (every box moved right
    by ``shift`` of its width, every fourth object and fifth image tag missed, so that its
    precision and recall differ), and the scenes' ground truth (the world's own JSONL)
    imported as the source :data:`TRUTH_SOURCE`."""
    hits = es.search(index=index, size=1000, query={"match_all": {}}, sort=[{f.ITEM_ID: "asc"}])[
        "hits"
    ]["hits"]
    shifted = []
    objects = tags = 0
    for hit in hits:
        doc = hit["_source"]
        boxes = []
        for p in doc[f.OBJECT_PREDICTIONS]:
            objects += 1
            if objects % 4 == 0:
                continue
            b = p[f.PRED_BBOX]
            dx = shift * (b["x2"] - b["x1"])
            box = {"x1": b["x1"] + dx, "y1": b["y1"], "x2": b["x2"] + dx, "y2": b["y2"]}
            boxes.append({"label": p["label"], "score": p["score"], "bbox": box})
        kept = []
        for p in doc[f.IMAGE_PREDICTIONS]:
            tags += 1
            if tags % 5:
                kept.append({"label": p["label"], "score": p["score"]})
        shifted.append(ItemPredictions({f.ITEM_ID: hit["_id"]}, kept, boxes))
    result = PredictionWriter(es, index, training_set=SHIFTED_SET).write(shifted)
    assert not result.failed, result.failed
    summary = run_import(
        read_truth_jsonl(folder / GROUND_TRUTH_FILE, source=TRUTH_SOURCE),
        TruthWriter(es, index, source=TRUTH_SOURCE),
    )
    assert not summary.failed, summary.failures
    es.indices.refresh(index=index)
