"""End to end on the synthetic world: its ground truth imported as a source, its images indexed
with the shipped tiny detector and CLIP, evaluated through the API and the command.

The figures must match the model-level quality measurement (``tests/indexer/
test_models_quality.py`` runs the models on the scenes directly): tag precision and recall at
0.5 exactly, detection AP@0.5 within 1e-3 of pycocotools on the detector's own output (and
close to the VOC-style figure the quality test prints). A second training set made from the
same detections with shifted boxes must come out worse, with a significant verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from elasticsearch import Elasticsearch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from api.app import create_app
from api.settings import Settings
from cli.main import main as autotag
from indexer.clip_tagger import ClipTagger
from indexer.detector import ObjectDetector
from indexer.importer import run_import
from indexer.models import TINY_CLIP, TINY_CLIP_MODEL, TINY_DETECTOR
from indexer.pipeline import IndexOptions, run_index
from indexer.sources import read_manifest
from indexer.synthetic import OBJECT_LABELS, generate
from indexer.synthetic.dataset import MANIFEST_FILE, item_id, write_dataset
from indexer.synthetic.metrics import BBox, mean_average_precision, precision_recall
from indexer.taxonomy import load_taxonomy
from indexer.truth import read_truth_jsonl
from store import schema as f
from store.truth import TruthWriter
from store.writer import ItemPredictions, PredictionWriter
from tests.api.conftest import client_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

SEED = 515_151  # used by no training run and no other quality test
IMAGES = 80
SOURCE = "world"
SCORE_THRESHOLD = 0.05  # the detector's, as in the model-level quality test

pytestmark = [pytest.mark.es, pytest.mark.anyio, pytest.mark.slow]  # ~25-40 s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _coco_ap50(
    detections: Sequence[Sequence[tuple[str, float, Sequence[float]]]],
    truths: Sequence[Sequence[tuple[str, Sequence[float]]]],
) -> dict[str, float]:
    """pycocotools' AP@0.5 per label on the detector's own output."""
    ids = {label: i + 1 for i, label in enumerate(OBJECT_LABELS)}
    annotations = [
        {"id": n, "image_id": image + 1, "category_id": ids[label], "iscrowd": 0,
         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])}
        for n, (image, (label, b)) in enumerate(
            ((i, o) for i, objects in enumerate(truths) for o in objects), start=1
        )
    ]  # fmt: skip
    results = [
        {"image_id": image + 1, "category_id": ids[label], "score": score,
         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
        for image, found in enumerate(detections)
        for label, score, b in found
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = {
            "images": [{"id": i + 1} for i in range(len(truths))],
            "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in ids.items()],
        }
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"]
    return {label: float(precision[0, :, i - 1, 0, 2].mean()) for label, i in ids.items()}


async def test_synthetic_world_evaluated_through_the_api(
    tmp_path: Path,
    es: Elasticsearch,
    es_url: str,
    item_index: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = tmp_path / "world"
    truth_file = write_dataset(world, IMAGES, SEED)
    taxonomy = load_taxonomy()

    # 1. the world's ground truth, as it is on disk, as the source "world"
    summary = run_import(
        read_truth_jsonl(truth_file, source=SOURCE),
        TruthWriter(es, item_index, source=SOURCE),
    )
    assert (summary.tagged, summary.failed) == (IMAGES, 0)

    # 2. the images, indexed with the shipped models
    detector = ObjectDetector(TINY_DETECTOR, taxonomy, score_threshold=SCORE_THRESHOLD)
    clip = ClipTagger(TINY_CLIP_MODEL, TINY_CLIP, taxonomy, cache_dir=tmp_path / "cache")
    summary = run_index(
        read_manifest(world / MANIFEST_FILE),
        PredictionWriter(es, item_index, training_set="tiny_v1"),
        clip=clip,
        detector=detector,
        options=IndexOptions(batch_size=32, workers=1, progress=False),
    )
    assert (summary.tagged, summary.failed) == (IMAGES, 0)
    es.indices.refresh(index=item_index)

    # 3. the same predictions with every box shifted by 40% of its width: a worse detector
    stored = {
        hit["_id"]: hit["_source"]
        for hit in es.search(index=item_index, size=IMAGES, query={"match_all": {}})["hits"]["hits"]
    }
    shifted = []
    for key, doc in stored.items():
        boxes = []
        for p in doc[f.OBJECT_PREDICTIONS]:
            b = p["bbox"]
            dx = 0.4 * (b["x2"] - b["x1"])
            box = {"x1": b["x1"] + dx, "y1": b["y1"], "x2": b["x2"] + dx, "y2": b["y2"]}
            boxes.append({"label": p["label"], "score": p["score"], "bbox": box})
        tags = [{"label": p["label"], "score": p["score"]} for p in doc[f.IMAGE_PREDICTIONS]]
        shifted.append(ItemPredictions({f.ITEM_ID: key}, tags, boxes))
    PredictionWriter(es, item_index, training_set="tiny_shifted", refresh=True).write(shifted)

    # 4. the model-level figures, from the models run on the scenes directly
    scenes = list(generate(IMAGES, SEED))
    direct: list[list[tuple[str, float, BBox]]] = []
    for found in detector.predict([detector.preprocess(image) for image, _ in scenes]):
        direct.append([(d.label, d.score, d.bbox) for d in found])
    truths = [truth.objects for _, truth in scenes]
    voc_map, voc = mean_average_precision(direct, truths, OBJECT_LABELS)
    coco = _coco_ap50(direct, truths)
    batch = torch.stack([clip.preprocess(image) for image, _ in scenes])
    tag_scores = [dict(row) for row in clip.predict(batch)]

    # 5. through the API
    settings = Settings(es_url=es_url, index=item_index)
    async with client_for(create_app(settings)) as client:
        response = await client.post(
            "/v1/evaluate",
            json={
                "query": f"truth_source = {SOURCE}",
                "training_sets": ["tiny_v1", "tiny_shifted"],
                "truth": SOURCE,
                "bootstrap": 500,
            },
        )
    assert response.status_code == 200, response.text
    report = response.json()
    v1 = next(r for r in report["training_sets"] if r["training_set"] == "tiny_v1")
    assert v1["items"] == IMAGES
    by_label = {(m["kind"], m["label"]): m for m in v1["labels"]}
    lines = [f"[evaluate] {IMAGES} synthetic images (seed {SEED}), truth {SOURCE}:"]
    for label in OBJECT_LABELS:
        ours = by_label["object", label]
        lines.append(
            f"  {label:<18} AP@0.5 API {ours['ap_50']:.4f}  pycocotools {coco[label]:.4f}"
            f"  VOC (quality test) {voc[label]:.4f}  AP@[.5:.95] {ours['ap_50_95']:.4f}"
        )
        assert ours["ap_50"] == pytest.approx(coco[label], abs=1e-3)
        assert ours["ap_50"] == pytest.approx(voc[label], abs=0.03)
    lines.append(f"  mAP@0.5 API {v1['mean_ap']:.4f}  VOC (quality test) {voc_map:.4f}")
    assert v1["mean_ap"] == pytest.approx(voc_map, abs=0.03)
    for label in taxonomy.image_labels:
        ours = by_label["image", label]
        ordered = [item_id(SEED, i) for i in range(IMAGES)]
        reference = precision_recall(
            [tag_scores[i][label] >= 0.5 for i in range(IMAGES)],
            [label in scenes[i][1].tags for i in range(IMAGES)],
        )
        assert len(ordered) == IMAGES
        assert ours["tp"] + ours["fp"] == reference.predicted, label
        assert ours["truth"] == reference.actual, label
        if reference.predicted:
            assert ours["precision"] == pytest.approx(reference.precision, abs=1e-9), label
        if reference.actual:
            assert ours["recall"] == pytest.approx(reference.recall, abs=1e-9), label

    # the worse model comes out worse, significantly where there is enough truth
    shifted_report = next(r for r in report["training_sets"] if r["training_set"] == "tiny_shifted")
    assert shifted_report["mean_ap"] < v1["mean_ap"] - 0.2
    (pair,) = report["comparisons"]
    assert pair["items"] == IMAGES
    assert "tiny_v1 is better on car: AP" in pair["verdict"]
    assert "tiny_v1 is better on pedestrian: AP" in pair["verdict"]
    # the image tags are the same in both: no difference there
    assert "no significant difference on weather_rain (AP +0.00" in pair["verdict"]
    lines.append(f"  verdict: {pair['verdict']}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    # 6. the command says the same, and draws
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    plot = tmp_path / "eval.png"
    args = [
        "evaluate", f"truth_source = {SOURCE}", "-t", "tiny_v1", "-t", "tiny_shifted",
        "--truth", SOURCE, "--bootstrap", "500", "--json", "--plot", str(plot),
    ]  # fmt: skip
    capsys.readouterr()
    assert await asyncio.to_thread(autotag, args) == 0  # the command runs its own loop
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert printed["training_sets"] == report["training_sets"]
    assert printed["comparisons"] == report["comparisons"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 20_000
