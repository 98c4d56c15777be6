"""AP, recall and TP/FP at a score threshold agree with pycocotools (the reference COCO
implementation) within 1e-3, on random detections and ground truth with crowd regions, empty
images, a label with no truth and a label with no predictions."""

from __future__ import annotations

import contextlib
import io
import random
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluation.curves import LabelCurve
from evaluation.matching import IOU_THRESHOLDS, Box, match_boxes

LABELS = ["car", "pedestrian", "sign", "ghost", "unseen"]
# "ghost" is never in the truth (AP undefined); "unseen" is never predicted (AP 0).
NO_TRUTH, NO_PREDICTIONS = "ghost", "unseen"


def _box(rng: random.Random) -> Box:
    x, y = rng.uniform(0, 500), rng.uniform(0, 350)
    return (x, y, x + rng.uniform(5, 140), y + rng.uniform(5, 120))


def _jitter(rng: random.Random, box: Box, amount: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    dx, dy = rng.gauss(0, amount * w), rng.gauss(0, amount * h)
    sw, sh = rng.uniform(1 - amount, 1 + amount), rng.uniform(1 - amount, 1 + amount)
    return (box[0] + dx, box[1] + dy, box[0] + dx + w * sw, box[1] + dy + h * sh)


def _world(
    seed: int, images: int
) -> tuple[dict[int, list[tuple[str, Box, bool]]], dict[int, list[tuple[str, float, Box]]]]:
    rng = random.Random(seed)
    truth: dict[int, list[tuple[str, Box, bool]]] = {}
    found: dict[int, list[tuple[str, float, Box]]] = {}
    for image in range(1, images + 1):
        objects: list[tuple[str, Box, bool]] = []
        if rng.random() > 0.15:  # some images have no truth at all
            for _ in range(rng.randint(0, 9)):
                label = rng.choice([x for x in LABELS if x != NO_TRUTH])
                objects.append((label, _box(rng), rng.random() < 0.08))
        detections: list[tuple[str, float, Box]] = []
        for label, box, _crowd in objects:
            if label == NO_PREDICTIONS:
                continue
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                detections.append((label, rng.random(), _jitter(rng, box, rng.uniform(0, 0.3))))
        for _ in range(rng.randint(0, 6)):  # false alarms, some of them confusions
            label = rng.choice([x for x in LABELS if x != NO_PREDICTIONS])
            detections.append((label, rng.random() * 0.8, _box(rng)))
        if image % 17 == 0:  # an image with more than 100 detections of one label
            detections += [("car", rng.random(), _box(rng)) for _ in range(130)]
        truth[image] = objects
        found[image] = detections
    return truth, found


def _xywh(box: Box) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _pycocotools(
    truth: dict[int, list[tuple[str, Box, bool]]], found: dict[int, list[tuple[str, float, Box]]]
) -> COCOeval:
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(LABELS)]
    ids = {name: i + 1 for i, name in enumerate(LABELS)}
    annotations: list[dict[str, Any]] = []
    for image, objects in truth.items():
        for label, box, crowd in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCO treats id 0 as "unmatched"
                    "image_id": image,
                    "category_id": ids[label],
                    "bbox": _xywh(box),
                    "area": (box[2] - box[0]) * (box[3] - box[1]),
                    "iscrowd": int(crowd),
                }
            )
    dataset = {
        "images": [{"id": image, "width": 640, "height": 480} for image in truth],
        "annotations": annotations,
        "categories": categories,
    }
    results = [
        {"image_id": image, "category_id": ids[label], "bbox": _xywh(box), "score": score}
        for image, detections in found.items()
        for label, score, box in detections
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = dataset
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def _ours(
    truth: dict[int, list[tuple[str, Box, bool]]],
    found: dict[int, list[tuple[str, float, Box]]],
    budget: int,
) -> dict[str, LabelCurve]:
    curves = {label: LabelCurve(budget=budget) for label in LABELS}
    for image in sorted(truth):
        for label in LABELS:
            detections = [(s, b) for name, s, b in found[image] if name == label]
            boxes = [(b, crowd) for name, b, crowd in truth[image] if name == label]
            if not detections and not boxes:
                continue
            matched, counted = match_boxes(detections, boxes)
            curves[label].add(matched, counted)
    return curves


def _reference_counts(evaluation: COCOeval, category: int, t: int, score: float) -> tuple[int, int]:
    """TP and FP at a score threshold, read from pycocotools' per-image results."""
    tp = fp = 0
    for record in evaluation.evalImgs:
        if record is None or record["category_id"] != category:
            continue
        if record["aRng"] != [0, 1e10] or record["maxDet"] != 100:
            continue
        for d, s in enumerate(record["dtScores"]):
            if s < score or record["dtIgnore"][t][d]:
                continue
            if record["dtMatches"][t][d] > 0:
                tp += 1
            else:
                fp += 1
    return tp, fp


@pytest.mark.parametrize(("seed", "images"), [(1, 40), (2, 120), (3, 7)])
def test_matches_pycocotools(seed: int, images: int) -> None:
    truth, found = _world(seed, images)
    reference = _pycocotools(truth, found)
    curves = _ours(truth, found, budget=10**9)
    precision = reference.eval["precision"]  # [T, R, K, A, M]
    recall = reference.eval["recall"]  # [T, K, A, M]
    present = []
    for k, label in enumerate(LABELS):
        cumulative = curves[label].cumulative()
        ap = cumulative.average_precision()
        if label == NO_TRUTH:
            assert ap is None
            assert (precision[:, :, k, 0, 2] == -1).all()
            continue
        assert ap is not None
        present.append(ap)
        expected = precision[:, :, k, 0, 2].mean(axis=1)
        np.testing.assert_allclose(ap, expected, atol=1e-3, err_msg=label)
        final = cumulative.final_recall()
        assert final is not None
        np.testing.assert_allclose(final, recall[:, k, 0, 2], atol=1e-3, err_msg=label)
        if label == NO_PREDICTIONS:
            assert (ap == 0).all()
        for t in (0, 5):
            for score in (0.0, 0.3, 0.5, 0.75):
                ours = cumulative.counts_at(score, t)
                assert ours == _reference_counts(reference, k + 1, t, score), (label, t, score)
    # mAP@[.5:.95] and mAP@0.5 over the labels with truth: pycocotools' stats[0], stats[1]
    assert np.mean([ap.mean() for ap in present]) == pytest.approx(reference.stats[0], abs=1e-3)
    assert np.mean([ap[0] for ap in present]) == pytest.approx(reference.stats[1], abs=1e-3)


def test_histogram_mode_stays_within_a_thousandth() -> None:
    """Past the budget, detections are folded into score bins: AP moves by < 1e-3 here."""
    truth, found = _world(5, 150)
    reference = _pycocotools(truth, found)
    curves = _ours(truth, found, budget=50)
    for k, label in enumerate(LABELS):
        if label == NO_TRUTH:
            continue
        assert not curves[label].exact or label == NO_PREDICTIONS
        ap = curves[label].cumulative().average_precision()
        assert ap is not None
        expected = reference.eval["precision"][:, :, k, 0, 2].mean(axis=1)
        np.testing.assert_allclose(ap, expected, atol=1e-3, err_msg=label)


def test_iou_thresholds_are_cocos() -> None:
    assert len(IOU_THRESHOLDS) == 10
    np.testing.assert_array_equal(IOU_THRESHOLDS, np.linspace(0.5, 0.95, 10))


@pytest.mark.parametrize("budget", [10**9, 50])
def test_bootstrap_replicates_reproduce_the_point_estimate(budget: int) -> None:
    """Weight 1 on every block gives back the curve's own AP and counts (exactly while the
    detections are kept, and from the coarse block histograms past the budget)."""
    truth, found = _world(4, 90)
    curves = {label: LabelCurve(budget=budget, blocks=8) for label in LABELS}
    for image in sorted(truth):
        for label in LABELS:
            detections = [(s, b) for name, s, b in found[image] if name == label]
            boxes = [(b, crowd) for name, b, crowd in truth[image] if name == label]
            matched, counted = match_boxes(detections, boxes)
            curves[label].add(matched, counted, block=image % 8)
    for label in ("car", "pedestrian", "unseen"):
        curve = curves[label]
        point = curve.cumulative().average_precision()
        assert point is not None
        base = curve.replicate_base()
        tolerance = 1e-12 if curve.exact else 0.02  # 200 coarse bins past the budget
        np.testing.assert_allclose(base.average_precision()[0], point, atol=tolerance)
        tp, fp = curve.cumulative().counts_at(0.5, 0)
        base_tp, base_fp = base.counts_at(0.5, 0)
        assert (base_tp[0], base_fp[0]) == (tp, fp)
        # a replicate that takes block 0 eight times is block 0's own curve, on its images
        only = np.zeros((1, 8))
        only[0, 0] = 8
        (replicate,) = list(curve.replicates(only))
        assert replicate.truth[0] == 8 * curve.truth_per_block[0]
