"""What an evaluation is asked and what it answers: pydantic models shared by the API
(``/v1/evaluate``, whose OpenAPI schema they are) and the ``autotag evaluate`` command."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evaluation.matching import IOU_THRESHOLDS, iou_threshold_index
from store.schema import PredictionKind

REVIEWS: Final = "reviews"
MAX_TRAINING_SETS: Final = 5
WORKERS_FROM_ITEMS: Final = 50_000
"""Slices this large are judged in worker processes when workers are given (below it,
starting the processes costs more than they save)."""

Name = Annotated[str, Field(min_length=1, max_length=512)]


class EvaluationOptions(BaseModel):
    """How to evaluate; the slice (a query) comes with the request around it."""

    model_config = ConfigDict(extra="forbid")

    training_sets: list[Name] = Field(
        min_length=1,
        max_length=MAX_TRAINING_SETS,
        description="Training sets (model versions) to evaluate; with two or more, each pair is"
        " compared on the items both tagged.",
        examples=[["model_v1", "model_v2"]],
        json_schema_extra={"uniqueItems": True},
    )
    truth: Name = Field(
        REVIEWS,
        description='"reviews" (the review decisions: accepted is right, rejected wrong, modified'
        " wrong for the model's label and box) or the name of an imported ground-truth source.",
    )
    iou_threshold: float = Field(
        0.5,
        description="IoU at which a box counts as found, one of COCO's: "
        + ", ".join(f"{t:.2f}" for t in IOU_THRESHOLDS),
        json_schema_extra={"enum": [round(t, 2) for t in IOU_THRESHOLDS]},
    )
    score_threshold: float = Field(
        0.5, ge=-1.0, le=1.0, description="Predictions scoring at least this count as made."
    )
    calibration_bins: int = Field(
        20, ge=2, le=200, description="Equal-width score bins on [-1, 1] for calibration."
    )
    bootstrap: int = Field(
        1000, ge=50, le=10_000, description="Bootstrap replicates for the comparison intervals."
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the bootstrap (same seed, same intervals)."
    )

    @field_validator("training_sets")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each training set once")
        return value

    @field_validator("iou_threshold")
    @classmethod
    def _coco_iou(cls, value: float) -> float:
        return IOU_THRESHOLDS[iou_threshold_index(value)]


class CalibrationBin(BaseModel):
    low: float
    high: float
    band: str | None = Field(None, description="The score band's name, for band rows.")
    predictions: int = Field(description="Judged predictions scoring in [low, high).")
    correct: int
    precision: float | None = Field(description="Observed precision: correct / predictions.")


class PrPoint(BaseModel):
    recall: float
    precision: float = Field(description="COCO's interpolated precision at this recall.")
    score: float | None = Field(description="Lowest score needed to reach this recall.")


class ReviewCounts(BaseModel):
    accepted: int
    rejected: int
    modified_away: int = Field(
        description="Predictions of this label a reviewer changed (label or box): wrong."
    )
    corrected_to: int = Field(
        description="Modified predictions that now carry this label: objects the model saw"
        " and labelled (or boxed) wrongly."
    )
    pending: int = Field(description="Not reviewed yet: not counted.")


class LabelMetrics(BaseModel):
    kind: PredictionKind
    label: str
    truth: int | None = Field(description="Ground-truth objects (or images) that count.")
    predictions: int = Field(description="Predictions judged (kept, not ignored).")
    tp: int
    fp: int
    fn: int | None
    precision: float | None
    recall: float | None
    f1: float | None
    ap: float | None = Field(description="101-point AP at the requested IoU threshold.")
    ap_50: float | None
    ap_50_95: float | None = Field(description="COCO AP, mean over IoU 0.50:0.95.")
    pr_curve: list[PrPoint] = Field(description="At the requested IoU; empty with reviews.")
    calibration: list[CalibrationBin] = Field(description="Per score band.")
    calibration_bins: list[CalibrationBin]
    reviews: ReviewCounts | None = None
    exact: bool = Field(True, description="False when scores were binned (very large slices).")


class Confusion(BaseModel):
    kind: PredictionKind
    original_label: str
    label: str
    count: int


class TrainingSetReport(BaseModel):
    training_set: str
    items: int = Field(description="Items of the slice evaluated for this training set.")
    labels: list[LabelMetrics]
    mean_ap: float | None = Field(description="Mean AP over object labels with truth.")
    mean_ap_50_95: float | None
    confusions: list[Confusion] = Field(description="From modified reviews: original -> new.")


class MetricDifference(BaseModel):
    metric: str
    a: float | None
    b: float | None
    difference: float | None = Field(description="b - a")
    ci_low: float | None = Field(description="Bootstrap 95% interval of the difference.")
    ci_high: float | None


class LabelComparison(BaseModel):
    kind: PredictionKind
    label: str
    differences: list[MetricDifference]
    verdict: str


class PairComparison(BaseModel):
    training_set_a: str
    training_set_b: str
    items: int = Field(description="Items both tagged (and judged), the ones compared.")
    bootstrap: int
    labels: list[LabelComparison]
    verdict: str


class EvaluationReport(BaseModel):
    query: str
    truth: str
    iou_threshold: float
    score_threshold: float
    items: int = Field(description="Items of the slice that were evaluated.")
    known: list[str] = Field(description="What this truth source can tell.")
    unknown: list[str] = Field(description="What it cannot, and why.")
    notes: list[str] = []
    training_sets: list[TrainingSetReport]
    comparisons: list[PairComparison]
    seconds: float


class NameCount(BaseModel):
    name: str
    items: int = Field(
        description="Items of the slice: that the training set tagged, that the source"
        " annotated, or (reviews) that hold a reviewed prediction."
    )


class EvaluationChoices(BaseModel):
    """What the slice can be evaluated with, and the options' defaults: what a form offers."""

    query: str
    training_sets: list[NameCount] = Field(
        description="Training sets that tagged items of the slice (tagged_by), most items first."
    )
    truth_sources: list[NameCount] = Field(
        description='"reviews" first, then the imported sources that annotated items of the'
        " slice, most items first."
    )
    iou_thresholds: list[float] = Field(description="The IoU thresholds one may ask for.")
    defaults: dict[str, float | int | str] = Field(
        description="The default of each option of an evaluation request that has one."
    )


def option_defaults() -> dict[str, float | int | str]:
    """The defaults of :class:`EvaluationOptions`, read from the model (one definition)."""
    out: dict[str, float | int | str] = {}
    for name, info in EvaluationOptions.model_fields.items():
        if not info.is_required() and isinstance(info.default, float | int | str):
            out[name] = info.default
    return out
