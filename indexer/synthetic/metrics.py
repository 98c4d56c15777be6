"""Quality figures against the synthetic ground truth: tag precision/recall, detection mAP@0.5."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BBox = tuple[float, float, float, float]
# per image: (label, score, box)
Scored = Sequence[tuple[str, float, BBox]]
Truth = Sequence[tuple[str, BBox]]


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float
    predicted: int
    actual: int


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> PrecisionRecall:
    """Precision and recall of boolean predictions (1.0 when there is nothing to get wrong)."""
    true_pos = sum(p and a for p, a in zip(predicted, actual, strict=True))
    n_pred, n_actual = sum(predicted), sum(actual)
    return PrecisionRecall(
        precision=true_pos / n_pred if n_pred else 1.0,
        recall=true_pos / n_actual if n_actual else 1.0,
        predicted=n_pred,
        actual=n_actual,
    )


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(
    detections: Sequence[Scored], truths: Sequence[Truth], label: str, threshold: float = 0.5
) -> float:
    """VOC-style AP (all-point interpolation) of one class: detections are matched greedily by
    descending score to the best unmatched ground-truth box with IoU >= ``threshold``."""
    ranked = sorted(
        (
            (score, image, box)
            for image, found in enumerate(detections)
            for name, score, box in found
            if name == label
        ),
        key=lambda item: -item[0],
    )
    gt = [[box for name, box in truth if name == label] for truth in truths]
    n_gt = sum(len(boxes) for boxes in gt)
    if n_gt == 0:
        return float("nan")
    used = [[False] * len(boxes) for boxes in gt]
    hits: list[bool] = []
    for _, image, box in ranked:
        overlaps = [iou(box, other) for other in gt[image]]
        best = max(range(len(overlaps)), key=overlaps.__getitem__, default=-1)
        if best >= 0 and overlaps[best] >= threshold and not used[image][best]:
            used[image][best] = True
            hits.append(True)
        else:
            hits.append(False)
    precisions, recalls, true_pos = [], [], 0
    for rank, hit in enumerate(hits, start=1):
        true_pos += hit
        precisions.append(true_pos / rank)
        recalls.append(true_pos / n_gt)
    # precision envelope, then the area under the stepwise precision/recall curve
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    area, previous_recall = 0.0, 0.0
    for precision, recall in zip(precisions, recalls, strict=True):
        area += (recall - previous_recall) * precision
        previous_recall = recall
    return area


def mean_average_precision(
    detections: Sequence[Scored],
    truths: Sequence[Truth],
    labels: Sequence[str],
    threshold: float = 0.5,
) -> tuple[float, dict[str, float]]:
    """mAP over ``labels`` that occur in the ground truth, and AP per label."""
    per_label = {label: average_precision(detections, truths, label, threshold) for label in labels}
    present = [ap for ap in per_label.values() if ap == ap]  # drop NaN (no ground truth)
    return (sum(present) / len(present) if present else float("nan")), per_label
