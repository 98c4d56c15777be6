"""End to end on the synthetic world: images -> shipped tiny models -> writer -> a real node ->
the query language. Quality is measured through the query layer, as a user would see it.

Prints precision/recall of ``image_prefix:weather_rain AND score >= 0.5`` against the ground
truth and the detector's mAP@0.5 computed from the object predictions stored in the index.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from elasticsearch import Elasticsearch

from indexer.clip_tagger import ClipTagger
from indexer.detector import ObjectDetector
from indexer.models import TINY_CLIP, TINY_CLIP_MODEL, TINY_DETECTOR
from indexer.pipeline import IndexOptions, run_index
from indexer.sources import read_manifest
from indexer.synthetic import OBJECT_LABELS
from indexer.synthetic.dataset import MANIFEST_FILE, read_ground_truth, write_dataset
from indexer.synthetic.metrics import mean_average_precision, precision_recall
from indexer.taxonomy import load_taxonomy
from search import parse, translate
from store.writer import PredictionWriter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

SEED = 424_242  # not used by training or the model-level quality tests
IMAGES = 150
QUERY = "image_prefix:weather_rain AND score >= 0.5"
MIN_PRECISION_RECALL = 0.9
MIN_MAP = 0.75  # stated: the shipped detector through the whole pipeline and the index


def _ids(es: Elasticsearch, index: str, text: str) -> set[str]:
    response = es.search(index=index, query=translate(parse(text)), size=IMAGES, source=False)
    return {hit["_id"] for hit in response["hits"]["hits"]}


@pytest.mark.es
@pytest.mark.slow
def test_synthetic_world_quality_through_the_query_layer(
    tmp_path: Path, es: Elasticsearch, item_index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = read_ground_truth(write_dataset(tmp_path / "world", IMAGES, SEED))
    taxonomy = load_taxonomy()
    clip = ClipTagger(TINY_CLIP_MODEL, TINY_CLIP, taxonomy, cache_dir=tmp_path / "cache")
    detector = ObjectDetector(TINY_DETECTOR, taxonomy, score_threshold=0.1)
    writer = PredictionWriter(es, item_index, training_set="tiny_v1")
    summary = run_index(
        read_manifest(tmp_path / "world" / MANIFEST_FILE),
        writer,
        clip=clip,
        detector=detector,
        options=IndexOptions(batch_size=32, workers=1, progress=False),
    )
    assert (summary.tagged, summary.failed) == (IMAGES, 0)
    es.indices.refresh(index=item_index)

    found = _ids(es, item_index, QUERY)
    ordered = sorted(truth)
    rain = precision_recall(
        [i in found for i in ordered], ["weather_rain" in truth[i].tags for i in ordered]
    )

    docs: dict[str, Any] = {
        hit["_id"]: hit["_source"]
        for hit in es.search(index=item_index, size=IMAGES, query={"match_all": {}})["hits"]["hits"]
    }
    detections = [
        [
            (p["label"], p["score"], tuple(p["bbox"][k] for k in ("x1", "y1", "x2", "y2")))
            for p in docs[i]["object_predictions"]
        ]
        for i in ordered
    ]
    m_ap, per_label = mean_average_precision(
        detections, [truth[i].objects for i in ordered], OBJECT_LABELS
    )
    with capsys.disabled():
        print(
            f"\n[quality] {IMAGES} synthetic images (seed {SEED}) indexed end to end;\n"
            f"[quality] `{QUERY}`: precision {rain.precision:.3f} recall {rain.recall:.3f} "
            f"({len(found)} found, {rain.actual} rainy)\n"
            f"[quality] detections in the index: mAP@0.5 {m_ap:.3f} "
            + " ".join(f"{label} {ap:.3f}" for label, ap in per_label.items())
        )
    assert rain.precision >= MIN_PRECISION_RECALL
    assert rain.recall >= MIN_PRECISION_RECALL
    assert m_ap >= MIN_MAP
