"""Matching one image's detections of one label to its ground truth, exactly as COCO does.

COCO's ``evaluateImg`` for boxes, area range "all": detections sorted by score (stable), the
best ``MAX_DETECTIONS`` kept; ground truth sorted non-crowd first; for each IoU threshold each
detection in turn takes the unmatched ground-truth box it overlaps most (at least the
threshold), preferring non-crowd boxes; a crowd region may absorb any number of detections,
which are then ignored (neither right nor wrong). The IoU with a crowd region divides by the
detection's area alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

# Exactly COCO's values (np.linspace's rounding included): 0.5, 0.55, ..., 0.95.
IOU_THRESHOLDS: Final[tuple[float, ...]] = tuple(
    float(t) for t in np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
)
RECALL_THRESHOLDS: Final = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1)
MAX_DETECTIONS: Final = 100
ALL_THRESHOLDS: Final = (1 << len(IOU_THRESHOLDS)) - 1


def iou_threshold_index(iou: float) -> int:
    """The position of ``iou`` among :data:`IOU_THRESHOLDS` (0.5, 0.55, ..., 0.95)."""
    for index, threshold in enumerate(IOU_THRESHOLDS):
        if abs(threshold - iou) < 1e-9:
            return index
    choices = ", ".join(f"{t:.2f}" for t in IOU_THRESHOLDS)
    raise ValueError(f"IoU threshold {iou} is not one of COCO's ({choices})")


def iou(detection: Box, truth: Box, crowd: bool) -> float:
    """Intersection over union; over the detection's area when ``truth`` is a crowd region."""
    width = min(detection[2], truth[2]) - max(detection[0], truth[0])
    if width <= 0:
        return 0.0
    height = min(detection[3], truth[3]) - max(detection[1], truth[1])
    if height <= 0:
        return 0.0
    inter = width * height
    area = (detection[2] - detection[0]) * (detection[3] - detection[1])
    union = area if crowd else area + (truth[2] - truth[0]) * (truth[3] - truth[1]) - inter
    return inter / union if union > 0 else 0.0


# One kept detection: its score, and per IoU threshold (bit t) whether it is a true positive
# and whether it is ignored (matched to a crowd region).
Matched = tuple[float, int, int]


def match_boxes(
    detections: Sequence[tuple[float, Box]],
    truths: Sequence[tuple[Box, bool]],
) -> tuple[list[Matched], int]:
    """COCO's greedy matching of one (image, label); returns the kept detections, best first,
    and the number of ground-truth boxes that count (not crowd)."""
    ranked = sorted(detections, key=lambda d: -d[0])[:MAX_DETECTIONS]
    ordered = sorted(truths, key=lambda t: t[1])  # non-crowd first, stable
    crowd = [c for _, c in ordered]
    counted = crowd.count(False)
    if not ordered:
        return [(score, 0, 0) for score, _ in ranked], 0
    overlaps = [[iou(box, g, c) for g, c in ordered] for _, box in ranked]
    tp = [0] * len(ranked)
    ignored = [0] * len(ranked)
    n = len(ordered)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        taken = [False] * n
        bit = 1 << t
        for d, row in enumerate(overlaps):
            best = min(threshold, 1 - 1e-10)
            m = -1
            for g in range(n):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not crowd[m] and crowd[g]:
                    break
                if row[g] < best:
                    continue
                best = row[g]
                m = g
            if m == -1:
                continue
            taken[m] = True
            if crowd[m]:
                ignored[d] |= bit
            else:
                tp[d] |= bit
    return [(score, tp[d], ignored[d]) for d, (score, _) in enumerate(ranked)], counted


def match_tags(score: float | None, present: bool) -> tuple[list[Matched], int]:
    """An image-level label: the item's best score for it, right exactly when the truth has it.

    Shaped like :func:`match_boxes` (every IoU bit alike), so one curve type serves both.
    """
    kept = [] if score is None else [(score, ALL_THRESHOLDS if present else 0, 0)]
    return kept, int(present)
