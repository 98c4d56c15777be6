"""Pictures of a report: precision-recall curves per label and a reliability diagram.

matplotlib draws off screen (the Agg backend), so this works on a server without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from evaluation.report import EvaluationReport, LabelMetrics

MAX_PANELS: Final = 8


def _pooled_bins(labels: list[LabelMetrics]) -> list[tuple[float, float, int]]:
    """Per calibration bin over every label: (mean score of the bin, precision, predictions)."""
    if not labels:
        return []
    out = []
    for i, first in enumerate(labels[0].calibration_bins):
        judged = sum(m.calibration_bins[i].predictions for m in labels)
        correct = sum(m.calibration_bins[i].correct for m in labels)
        if judged:
            out.append(((first.low + first.high) / 2, correct / judged, judged))
    return out


def plot_report(report: EvaluationReport, path: Path) -> Path:
    """PR curves (one panel per label with ground truth, every training set in it) and the
    reliability diagram (observed precision per score bin, pooled over labels, per set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, LabelMetrics]] = {}
    for ts in report.training_sets:
        for metrics in ts.labels:
            if metrics.pr_curve:
                curves.setdefault(f"{metrics.kind.value}:{metrics.label}", {})[ts.training_set] = (
                    metrics
                )
    # boxes first: they are what AP is about
    shown = sorted(curves, key=lambda name: (not name.startswith("object:"), name))[:MAX_PANELS]
    panels = len(shown) + 1
    columns = min(3, panels)
    rows = (panels + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, name in zip(flat, shown, strict=False):
        for training_set, metrics in curves[name].items():
            recall = [p.recall for p in metrics.pr_curve]
            precision = [p.precision for p in metrics.pr_curve]
            ap = "" if metrics.ap is None else f" (AP {metrics.ap:.3f})"
            ax.plot(recall, precision, label=f"{training_set}{ap}")
        ax.set_title(f"PR {name} @IoU {report.iou_threshold:.2f}", fontsize=9)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower left")
    reliability = flat[len(shown)]
    for ts in report.training_sets:
        pooled = _pooled_bins(ts.labels)
        if pooled:
            reliability.plot(
                [x for x, _, _ in pooled],
                [y for _, y, _ in pooled],
                marker="o",
                label=ts.training_set,
            )
    # scores are stored as 2p - 1: a calibrated model sits on p = (score + 1) / 2
    reliability.plot([-1, 1], [0, 1], linestyle=":", color="grey", label="(score + 1) / 2")
    for ts in report.training_sets[:1]:
        for band in ts.labels[0].calibration if ts.labels else ():
            reliability.axvline(band.low, color="lightgrey", linewidth=0.8)
    reliability.set_title(f"reliability ({report.truth})", fontsize=9)
    reliability.set_xlabel("score (bin centre)")
    reliability.set_ylabel("observed precision")
    reliability.set_xlim(-1, 1)
    reliability.set_ylim(0, 1.02)
    reliability.legend(fontsize=7, loc="upper left")
    for ax in flat[len(shown) + 1 :]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
