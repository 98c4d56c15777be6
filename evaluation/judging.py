"""Judging items: what one item says about each training set, and the curves it adds to.

Pure functions of an item's ``_source`` (no I/O): :func:`judge_against_truth` matches a
training set's detections to an imported truth source, :func:`judge_reviews` reads the review
decisions, and an :class:`Accumulator` adds the judged items to per-label curves, per training
set and per pair on the items both tagged (in ``BLOCKS`` groups of items, for the bootstrap).
Accumulators of disjoint slices merge (:meth:`Accumulator.merge`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Final

from evaluation.curves import LabelCurve
from evaluation.figures import LabelKey
from evaluation.matching import ALL_THRESHOLDS, Box, Matched, match_boxes, match_tags
from store import schema as f
from store.schema import PredictionKind, PredictionStatus

BLOCKS: Final = 64
REVIEWED_STATUSES: Final = (
    PredictionStatus.ACCEPTED.value,
    PredictionStatus.REJECTED.value,
    PredictionStatus.MODIFIED.value,
)
_PRED_FIELDS: Final = (
    f.PRED_LABEL,
    f.PRED_SCORE,
    f.PRED_TRAINING_SET,
    f.PRED_STATUS,
    f.PRED_ORIGINAL_LABEL,
)


_OBJECTS: Final = f.OBJECT_PREDICTIONS
_IMAGES: Final = f.IMAGE_PREDICTIONS
_SET: Final = f.PRED_TRAINING_SET
_SCORE: Final = f.PRED_SCORE
_LABEL: Final = f.PRED_LABEL
_ORIGINAL_LABEL: Final = f.PRED_ORIGINAL_LABEL
_BBOX: Final = f.PRED_BBOX
_ORIGINAL_BBOX: Final = f.PRED_ORIGINAL_BBOX


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


Judged = dict[LabelKey, tuple[list[Matched], int]]


def judge_against_truth(
    doc: Mapping[str, Any], sets: Sequence[str], source: str
) -> dict[str, Judged]:
    """Per training set that tagged ``doc``: every label's matched detections and truth."""
    truth_boxes: dict[str, list[tuple[Box, bool]]] = defaultdict(list)
    for annotation in doc.get(f.TRUTH_OBJECTS) or ():
        if annotation.get(f.ANNOTATION_SOURCE) != source:
            continue
        raw = annotation.get(_BBOX)
        try:
            box = (raw["x1"], raw["y1"], raw["x2"], raw["y2"])
        except (KeyError, TypeError):
            continue
        crowd = annotation.get(f.ANNOTATION_CROWD) is True
        truth_boxes[annotation.get(_LABEL)].append((box, crowd))
    truth_tags = {
        a.get(_LABEL) for a in doc.get(f.TRUTH_IMAGES) or () if a.get(f.ANNOTATION_SOURCE) == source
    }
    tagged = set(doc.get(f.TAGGED_BY) or ())
    wanted = [name for name in sets if name in tagged]
    boxes_of: dict[str, dict[str, list[tuple[float, Box]]]] = {n: defaultdict(list) for n in wanted}
    tags_of: dict[str, dict[str, float]] = {n: {} for n in wanted}
    # The hot loop of a large evaluation: plain lookups, no conversions (scores become
    # 32-bit floats in bulk, in the curves).
    for p in doc.get(_OBJECTS) or ():
        found = boxes_of.get(p.get(_SET))
        score = p.get(_SCORE)
        if found is None or (score.__class__ is not float and score.__class__ is not int):
            continue
        raw = p.get(_ORIGINAL_BBOX) or p.get(_BBOX)
        try:
            box = (raw["x1"], raw["y1"], raw["x2"], raw["y2"])
        except (KeyError, TypeError):
            continue
        found[p.get(_ORIGINAL_LABEL) or p.get(_LABEL)].append((score, box))
    for p in doc.get(_IMAGES) or ():
        best = tags_of.get(p.get(_SET))
        score = p.get(_SCORE)
        if best is None or (score.__class__ is not float and score.__class__ is not int):
            continue
        label = p.get(_ORIGINAL_LABEL) or p.get(_LABEL)
        if score > best.get(label, -2.0):
            best[label] = score
    out: dict[str, Judged] = {}
    for name in wanted:
        boxes, tags = boxes_of[name], tags_of[name]
        judged: Judged = {}
        for label in boxes.keys() | truth_boxes.keys():
            judged[PredictionKind.OBJECT, label] = match_boxes(
                boxes.get(label, ()), truth_boxes.get(label, ())
            )
        for label in tags.keys() | truth_tags:
            judged[PredictionKind.IMAGE, label] = match_tags(tags.get(label), label in truth_tags)
        out[name] = judged
    return out


def judge_reviews(doc: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Judged]:
    """Per training set that tagged ``doc``: its reviewed predictions, right or wrong."""
    tagged = set(doc.get(f.TAGGED_BY) or ())
    out: dict[str, Judged] = {}
    for name in sets:
        if name not in tagged:
            continue
        judged: Judged = {}
        for kind in PredictionKind:
            for p in doc.get(kind.path) or ():
                score, status = p.get(f.PRED_SCORE), p.get(f.PRED_STATUS)
                if p.get(f.PRED_TRAINING_SET) != name or status not in REVIEWED_STATUSES:
                    continue
                if not _number(score):
                    continue
                label = str(p.get(f.PRED_ORIGINAL_LABEL) or p.get(f.PRED_LABEL))
                right = ALL_THRESHOLDS if status == PredictionStatus.ACCEPTED else 0
                judged.setdefault((kind, label), ([], 0))[0].append((score, right, 0))
        out[name] = judged
    return out


@dataclass
class Accumulator:
    """Curves per training set, and per pair of training sets on the items both tagged."""

    sets: Sequence[str]
    budget: int | None = None
    items: dict[str, int] = field(default_factory=dict)
    curves: dict[str, dict[LabelKey, LabelCurve]] = field(default_factory=dict)
    pair_items: dict[tuple[str, str], int] = field(default_factory=dict)
    pair_curves: dict[tuple[str, str], tuple[dict[LabelKey, LabelCurve], ...]] = field(
        default_factory=dict
    )
    per_set: bool = True

    def __post_init__(self) -> None:
        for name in self.sets:
            self.items[name] = 0
            self.curves[name] = {}
        for pair in combinations(self.sets, 2):
            self.pair_items[pair] = 0
            self.pair_curves[pair] = ({}, {})

    def _curve(self, curves: dict[LabelKey, LabelCurve], key: LabelKey, blocks: int) -> LabelCurve:
        curve = curves.get(key)
        if curve is None:
            options: dict[str, Any] = {"blocks": blocks}
            if self.budget is not None:
                options["budget"] = self.budget
            curve = curves[key] = LabelCurve(**options)
        return curve

    def add(self, judged: Mapping[str, Judged]) -> None:
        # With two training sets, an item both tagged goes into the pair's curves only; they
        # are merged into each set's own at the end (:meth:`finish`): each detection is added
        # once.
        shared = len(self.sets) == 2 and len(judged) == 2
        if self.per_set:
            for name, labels in judged.items():
                self.items[name] += 1
                if shared:
                    continue
                curves = self.curves[name]
                for key, (matched, counted) in labels.items():
                    self._curve(curves, key, 0).add(matched, counted)
        for pair, sides in self.pair_curves.items():
            if pair[0] not in judged or pair[1] not in judged:
                continue
            block = self.pair_items[pair] % BLOCKS
            self.pair_items[pair] += 1
            for name, curves in zip(pair, sides, strict=True):
                for key, (matched, counted) in judged[name].items():
                    self._curve(curves, key, BLOCKS).add(matched, counted, block)

    def merge(self, other: Accumulator) -> None:
        """Add ``other`` (same sets and settings), e.g. what a worker judged of its slice."""
        for name, curves in other.curves.items():
            self.items[name] += other.items[name]
            for key, curve in curves.items():
                self._curve(self.curves[name], key, 0).merge(curve)
        for pair, sides in other.pair_curves.items():
            self.pair_items[pair] += other.pair_items[pair]
            for mine, theirs in zip(self.pair_curves[pair], sides, strict=True):
                for key, curve in theirs.items():
                    self._curve(mine, key, BLOCKS).merge(curve)

    def finish(self) -> None:
        """Fold the pair's curves into the two sets' own (see :meth:`add`)."""
        if len(self.sets) != 2 or not self.per_set:
            return
        for name, curves in zip(self.sets, next(iter(self.pair_curves.values())), strict=True):
            for key, curve in curves.items():
                self._curve(self.curves[name], key, 0).merge(curve)


def fields_read(truth: bool) -> list[str]:
    """What a judge reads of an item: against truth, a prediction as the model made it (its
    review status is not read, which keeps the pages lean); with reviews, its status."""
    fields = [f.TAGGED_BY]
    read = [name for name in _PRED_FIELDS if not (truth and name == f.PRED_STATUS)]
    for path in f.PREDICTION_PATHS:
        fields += [f"{path}.{name}" for name in read]
    if truth:
        fields += [
            f"{f.OBJECT_PREDICTIONS}.{f.PRED_BBOX}",
            f"{f.OBJECT_PREDICTIONS}.{f.PRED_ORIGINAL_BBOX}",
        ]
        fields += [f"{f.TRUTH_IMAGES}.{n}" for n in (f.PRED_LABEL, f.ANNOTATION_SOURCE)]
        fields += [
            f"{f.TRUTH_OBJECTS}.{n}"
            for n in (f.PRED_LABEL, f.ANNOTATION_SOURCE, f.PRED_BBOX, f.ANNOTATION_CROWD)
        ]
    return fields
