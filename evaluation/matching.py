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


_STARTS: Final = tuple(min(t, 1 - 1e-10) for t in IOU_THRESHOLDS)


def _score(detection: tuple[float, Box]) -> float:
    return -detection[0]


def _crowd(truth: tuple[Box, bool]) -> bool:
    return truth[1]


def match_boxes(
    detections: Sequence[tuple[float, Box]],
    truths: Sequence[tuple[Box, bool]],
) -> tuple[list[Matched], int]:
    """COCO's greedy matching of one (image, label); returns the kept detections, best first,
    and the number of ground-truth boxes that count (not crowd)."""
    ranked = sorted(detections, key=_score)[:MAX_DETECTIONS]
    if not truths:
        return [(score, 0, 0) for score, _ in ranked], 0
    ordered = sorted(truths, key=_crowd)  # non-crowd first, stable
    crowd = [c for _, c in ordered]
    counted = crowd.count(False)
    if not ranked:
        return [], counted
    # Per detection, the ground truth it overlaps by at least the lowest threshold, in order:
    # the others are skipped at every threshold (COCO's `continue`), so only these are walked.
    candidates: list[list[tuple[int, float]]] = []
    top = 0.0
    for _, box in ranked:
        row = []
        for g, (truth, is_crowd) in enumerate(ordered):
            overlap = iou(box, truth, is_crowd)
            if overlap >= _STARTS[0]:
                row.append((g, overlap))
                top = max(top, overlap)
        candidates.append(row)
    tp = [0] * len(ranked)
    ignored = [0] * len(ranked)
    if top >= _STARTS[0]:
        for t, start in enumerate(_STARTS):
            if start > top:
                break  # nothing overlaps this much: no match at this or higher thresholds
            taken = [False] * len(ordered)
            bit = 1 << t
            for d, row in enumerate(candidates):
                best = start
                m = -1
                for g, overlap in row:
                    if taken[g] and not crowd[g]:
                        continue
                    if m > -1 and not crowd[m] and crowd[g]:
                        break
                    if overlap < best:
                        continue
                    best = overlap
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
