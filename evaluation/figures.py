"""From accumulated curves (or review counts) to the reported figures, and the comparison.

Pure: no I/O. Precision, recall and F1 are read at the score threshold; AP from COCO's
101-point interpolation; calibration as observed precision per score band (the bands of
``search.fields.BAND_RANGES``, the same table queries use) and per equal-width bin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from evaluation.curves import Cumulative, FloatArray, LabelCurve, Replicates
from evaluation.matching import RECALL_THRESHOLDS
from evaluation.report import (
    CalibrationBin,
    LabelComparison,
    LabelMetrics,
    MetricDifference,
    PairComparison,
    PrPoint,
    ReviewCounts,
)
from search.fields import BAND_RANGES
from store.schema import SCORE_MAX, SCORE_MIN, PredictionKind

LabelKey = tuple[PredictionKind, str]
# (low, high or None for "and above", band name or None)
Range = tuple[float, float | None, str | None]


def band_ranges() -> list[Range]:
    """The score bands, as ``[low, high)`` with the top one open above (it includes 1.0)."""
    return [
        (low, None if inclusive else high, band.value)
        for band, (low, high, inclusive) in BAND_RANGES.items()
    ]


def bin_ranges(bins: int) -> list[Range]:
    """``bins`` equal-width ranges over the score scale, the last one open above."""
    edges = SCORE_MIN + (SCORE_MAX - SCORE_MIN) * np.arange(bins + 1) / bins
    return [
        (float(edges[i]), None if i == bins - 1 else float(edges[i + 1]), None) for i in range(bins)
    ]


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom > 0 else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None or precision + recall == 0:
        return None if precision is None or recall is None else 0.0
    return 2 * precision * recall / (precision + recall)


def _calibration(
    ranges: list[Range], counts: Callable[[float, float | None], tuple[float, float]]
) -> list[CalibrationBin]:
    out = []
    for low, high, band in ranges:
        correct, wrong = counts(low, high)
        judged = round(correct + wrong)
        out.append(
            CalibrationBin(
                low=low,
                high=SCORE_MAX if high is None else high,
                band=band,
                predictions=judged,
                correct=round(correct),
                precision=_ratio(correct, correct + wrong),
            )
        )
    return out


@dataclass(frozen=True)
class Settings:
    iou_index: int
    score_threshold: float
    calibration_bins: int
    truth_known: bool


def label_metrics(
    key: LabelKey,
    curve: LabelCurve,
    settings: Settings,
    reviews: ReviewCounts | None = None,
) -> LabelMetrics:
    """Every figure of one (training set, label) from its curve."""
    kind, label = key
    cumulative = curve.cumulative()
    t = settings.iou_index
    tp, fp = cumulative.counts_at(settings.score_threshold, t)
    truth = curve.truth if settings.truth_known else None
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, truth) if truth is not None else None
    ap = cumulative.average_precision() if settings.truth_known else None
    pr_curve: list[PrPoint] = []
    if ap is not None:
        interpolated, scores = cumulative.interpolated()
        pr_curve = [
            PrPoint(
                recall=float(r),
                precision=float(interpolated[t, i]),
                score=None if np.isnan(scores[t, i]) else float(scores[t, i]),
            )
            for i, r in enumerate(RECALL_THRESHOLDS)
        ]
    judged = cumulative.counts_at(SCORE_MIN, t)
    return LabelMetrics(
        kind=kind,
        label=label,
        truth=truth,
        predictions=round(judged[0] + judged[1]),
        tp=round(tp),
        fp=round(fp),
        fn=None if truth is None else round(truth - tp),
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall) if truth is not None else None,
        ap=None if ap is None else float(ap[t]),
        ap_50=None if ap is None else float(ap[0]),
        ap_50_95=None if ap is None else float(ap.mean()),
        pr_curve=pr_curve,
        calibration=_calibration(band_ranges(), lambda lo, hi: cumulative.between(lo, hi, t)),
        calibration_bins=_calibration(
            bin_ranges(settings.calibration_bins), lambda lo, hi: cumulative.between(lo, hi, t)
        ),
        reviews=reviews,
        exact=curve.exact,
    )


def review_metrics(
    key: LabelKey,
    correct: Mapping[str, float],
    wrong: Mapping[str, float],
    reviews: ReviewCounts | None,
    settings: Settings,
) -> LabelMetrics:
    """One label from review counts per range (keys from :func:`range_key`): what reviews can
    tell, precision and calibration; recall, AP and the PR curve stay unknown (None)."""
    kind, label = key

    def counts(low: float, high: float | None) -> tuple[float, float]:
        name = range_key(low, high)
        return correct.get(name, 0.0), wrong.get(name, 0.0)

    tp, fp = counts(settings.score_threshold, None)
    everything = counts(SCORE_MIN, None)
    return LabelMetrics(
        kind=kind,
        label=label,
        truth=None,
        predictions=int(everything[0] + everything[1]),
        tp=int(tp),
        fp=int(fp),
        fn=None,
        precision=_ratio(tp, tp + fp),
        recall=None,
        f1=None,
        ap=None,
        ap_50=None,
        ap_50_95=None,
        pr_curve=[],
        calibration=_calibration(band_ranges(), counts),
        calibration_bins=_calibration(bin_ranges(settings.calibration_bins), counts),
        reviews=reviews,
        exact=True,
    )


def range_key(low: float, high: float | None) -> str:
    """A stable name for a score range (the range aggregation's bucket key)."""
    return f"{low!r}:{'' if high is None else repr(high)}"


def all_ranges(settings: Settings) -> list[tuple[float, float | None]]:
    """Every range a review aggregation must count: bands, bins, everything, the threshold."""
    found = {(low, high) for low, high, _ in band_ranges()}
    found |= {(low, high) for low, high, _ in bin_ranges(settings.calibration_bins)}
    found |= {(SCORE_MIN, None), (settings.score_threshold, None)}
    return sorted(found, key=lambda r: (r[0], r[1] if r[1] is not None else 9.0))


# --- comparison --------------------------------------------------------------------------------

Metric = Callable[[Cumulative], float | None]
BatchMetric = Callable[[Replicates], FloatArray]
PRIMARY_TRUTH: Final = "ap"
PRIMARY_REVIEWS: Final = "precision"


def _divide(top: FloatArray, bottom: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        result: FloatArray = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)
    return result


def metrics(settings: Settings) -> dict[str, tuple[Metric, BatchMetric]]:
    """The compared metrics: each read from a :class:`Cumulative` (the point estimate) and,
    vectorised, from bootstrap :class:`Replicates`."""
    t, threshold = settings.iou_index, settings.score_threshold

    def precision(c: Cumulative) -> float | None:
        tp, fp = c.counts_at(threshold, t)
        return _ratio(tp, tp + fp)

    def recall(c: Cumulative) -> float | None:
        return _ratio(c.counts_at(threshold, t)[0], c.truth)

    def f1(c: Cumulative) -> float | None:
        return _f1(precision(c), recall(c))

    def ap(c: Cumulative) -> float | None:
        values = c.average_precision()
        return None if values is None else float(values[t])

    def ap_50_95(c: Cumulative) -> float | None:
        values = c.average_precision()
        return None if values is None else float(values.mean())

    def precisions(r: Replicates) -> FloatArray:
        tp, fp = r.counts_at(threshold, t)
        return _divide(tp, tp + fp)

    def recalls(r: Replicates) -> FloatArray:
        return _divide(r.counts_at(threshold, t)[0], r.truth)

    def f1s(r: Replicates) -> FloatArray:
        p, q = precisions(r), recalls(r)
        return _divide(2 * p * q, p + q)

    def aps(r: Replicates) -> FloatArray:
        return r.average_precision()[:, t]

    def aps_50_95(r: Replicates) -> FloatArray:
        result: FloatArray = r.average_precision().mean(axis=1)
        return result

    if not settings.truth_known:
        return {"precision": (precision, precisions)}
    return {
        "ap": (ap, aps),
        "ap_50_95": (ap_50_95, aps_50_95),
        "precision": (precision, precisions),
        "recall": (recall, recalls),
        "f1": (f1, f1s),
    }


def compare_pair(
    names: tuple[str, str],
    curves: tuple[Mapping[LabelKey, LabelCurve], Mapping[LabelKey, LabelCurve]],
    items: int,
    settings: Settings,
    *,
    replicates: int,
    seed: int,
) -> PairComparison:
    """Per label, each metric's difference (b - a) and a bootstrap 95% interval over items.

    Items were dealt into the curves' blocks; a replicate draws blocks with replacement (the
    same draw for both sets: the comparison is paired). In histogram mode the replicates use
    coarse per-block histograms, so the interval is centred on the exact difference by
    shifting with the coarse one.
    """
    a_name, b_name = names
    a_curves, b_curves = curves
    keys = sorted(set(a_curves) | set(b_curves), key=lambda k: (k[0].value, k[1]))
    chosen = metrics(settings)
    primary = PRIMARY_TRUTH if settings.truth_known else PRIMARY_REVIEWS
    rng = np.random.default_rng(seed)
    blocks = next(iter(a_curves.values())).blocks if a_curves else 1
    weights = rng.multinomial(blocks, np.full(blocks, 1 / blocks), size=replicates).astype(
        np.float64
    )
    rows: list[LabelComparison] = []
    for key in keys:
        a_curve, b_curve = a_curves.get(key), b_curves.get(key)
        if a_curve is None or b_curve is None:
            continue
        point = (a_curve.cumulative(), b_curve.cumulative())
        base = (a_curve.replicate_base(), b_curve.replicate_base())
        # per metric, the replicates' differences, a chunk of replicates at a time
        spreads: dict[str, list[FloatArray]] = {name: [] for name in chosen}
        for ra, rb in zip(a_curve.replicates(weights), b_curve.replicates(weights), strict=True):
            for name, (_, batch) in chosen.items():
                spreads[name].append(batch(rb) - batch(ra))
        differences = []
        for name, (metric, batch) in chosen.items():
            a_value, b_value = metric(point[0]), metric(point[1])
            difference = None if a_value is None or b_value is None else b_value - a_value
            low = high = None
            shift = float((batch(base[1]) - batch(base[0]))[0])
            spread = np.concatenate(spreads[name])
            spread = spread[~np.isnan(spread)]
            if difference is not None and not np.isnan(shift) and len(spread) >= replicates // 2:
                q_low, q_high = np.percentile(spread - shift, [2.5, 97.5])
                low, high = difference + float(q_low), difference + float(q_high)
            differences.append(
                MetricDifference(
                    metric=name,
                    a=a_value,
                    b=b_value,
                    difference=difference,
                    ci_low=low,
                    ci_high=high,
                )
            )
        main = next(d for d in differences if d.metric == primary)
        rows.append(
            LabelComparison(
                kind=key[0],
                label=key[1],
                differences=differences,
                verdict=verdict_phrase(a_name, b_name, key[1], main),
            )
        )
    sentence = "; ".join(row.verdict for row in rows if row.verdict) or "nothing to compare"
    return PairComparison(
        training_set_a=a_name,
        training_set_b=b_name,
        items=items,
        bootstrap=replicates,
        labels=rows,
        verdict=sentence,
    )


_SHOWN: Final = {"ap": "AP", "ap_50_95": "AP@[.5:.95]", "precision": "precision"}


def verdict_phrase(a: str, b: str, label: str, main: MetricDifference) -> str:
    """ "b is better on car: AP +0.07, 95% CI [+0.03, +0.11]", or "no significant difference"."""
    shown = _SHOWN.get(main.metric, main.metric)
    if main.difference is None or main.ci_low is None or main.ci_high is None:
        return f"{label}: {shown} not comparable (no truth or no predictions)"
    if main.ci_low > 0:
        return (
            f"{b} is better on {label}: {shown} {main.difference:+.2f},"
            f" 95% CI [{main.ci_low:+.2f}, {main.ci_high:+.2f}]"
        )
    if main.ci_high < 0:
        return (
            f"{a} is better on {label}: {shown} {-main.difference:+.2f},"
            f" 95% CI [{-main.ci_high:+.2f}, {-main.ci_low:+.2f}]"
        )
    return (
        f"no significant difference on {label} ({shown} {main.difference:+.2f},"
        f" 95% CI [{main.ci_low:+.2f}, {main.ci_high:+.2f}])"
    )
