"""The shipped tiny models on freshly generated synthetic scenes (a seed not used in training).

Prints precision/recall per image tag (a tag is predicted when its score >= 0.5), group
accuracy (the top-scoring tag of each group) and the detector's AP@0.5 per class and mAP@0.5,
then asserts the thresholds of issue 4.
"""

from __future__ import annotations

import os

import pytest
import torch

from indexer.clip_tagger import ClipTagger
from indexer.detector import ObjectDetector
from indexer.models import TINY_CLIP, TINY_CLIP_MODEL, TINY_DETECTOR
from indexer.synthetic import OBJECT_LABELS, generate
from indexer.synthetic.metrics import mean_average_precision, precision_recall
from indexer.taxonomy import load_taxonomy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

QUALITY_SEED = 90_210  # training used 1000/2000 (CLIP) and 3000/4000 (detector)
TAG_IMAGES = 400
DETECTION_IMAGES = 200
SCORE_CUTOFF = 0.5
MIN_TAG_PRECISION_RECALL = 0.9  # for weather_rain, as issue 4 asks
MIN_GROUP_ACCURACY = 0.9
MIN_MAP = 0.8  # stated mAP@0.5 of the shipped detector on the synthetic world


def test_clip_tagger_quality(
    capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    taxonomy = load_taxonomy()
    tagger = ClipTagger(
        TINY_CLIP_MODEL, TINY_CLIP, taxonomy, cache_dir=tmp_path_factory.mktemp("cache")
    )
    scenes = list(generate(TAG_IMAGES, QUALITY_SEED))
    scores: list[dict[str, float]] = []
    for start in range(0, len(scenes), 100):
        batch = torch.stack([tagger.preprocess(image) for image, _ in scenes[start : start + 100]])
        scores.extend(dict(row) for row in tagger.predict(batch))
    truths = [truth.tags for _, truth in scenes]

    lines = [f"CLIP {tagger.model_name} on {TAG_IMAGES} scenes (seed {QUALITY_SEED}):"]
    figures = {}
    for label in taxonomy.image_labels:
        predicted = [s[label] >= SCORE_CUTOFF for s in scores]
        actual = [label in t for t in truths]
        figures[label] = pr = precision_recall(predicted, actual)
        lines.append(
            f"  {label:<20} precision {pr.precision:.3f} recall {pr.recall:.3f} "
            f"(predicted {pr.predicted}, actual {pr.actual})"
        )
    accuracy = {}
    for group in taxonomy.groups:
        hits = [
            max(group.labels, key=s.__getitem__) in t for s, t in zip(scores, truths, strict=True)
        ]
        accuracy[group.name] = sum(hits) / len(hits)
        lines.append(f"  group {group.name:<14} accuracy {accuracy[group.name]:.3f}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    rain = figures["weather_rain"]
    assert rain.precision >= MIN_TAG_PRECISION_RECALL
    assert rain.recall >= MIN_TAG_PRECISION_RECALL
    assert min(accuracy.values()) >= MIN_GROUP_ACCURACY, accuracy


def test_detector_quality(capsys: pytest.CaptureFixture[str]) -> None:
    taxonomy = load_taxonomy()
    detector = ObjectDetector(TINY_DETECTOR, taxonomy, score_threshold=0.05)
    scenes = list(generate(DETECTION_IMAGES, QUALITY_SEED + 1))
    detections = []
    for start in range(0, len(scenes), 25):
        chunk = scenes[start : start + 25]
        for found in detector.predict([detector.preprocess(image) for image, _ in chunk]):
            detections.append([(d.label, d.score, d.bbox) for d in found])
    truths = [truth.objects for _, truth in scenes]
    m_ap, per_label = mean_average_precision(detections, truths, OBJECT_LABELS)

    lines = [f"detector {detector.model_name} on {DETECTION_IMAGES} scenes:"]
    lines += [f"  AP@0.5 {label:<18} {ap:.3f}" for label, ap in per_label.items()]
    lines.append(f"  mAP@0.5 {m_ap:.3f}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert m_ap >= MIN_MAP
