"""Pictures of a report: precision-recall curves per label and a reliability diagram.

One definition of the figure, written to a file (``autotag evaluate --plot``) or to PNG bytes
(``POST /v1/evaluate/plot``, shown by the review page). It is drawn on a bare
:class:`matplotlib.figure.Figure` with the Agg canvas, never through ``pyplot``: no global
figure manager, no backend switch, nothing that needs a display. matplotlib's own caches
(fonts, text layout) are shared by the process, so figures are drawn one at a time.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

from evaluation.report import EvaluationReport, LabelMetrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_PANELS: Final = 8
DPI: Final = 110
_DRAWING: Final = threading.Lock()


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


def draw_report(report: EvaluationReport) -> Figure:
    """PR curves (one panel per label with ground truth, every training set in it) and the
    reliability diagram (observed precision per score bin, pooled over labels, per set)."""
    from matplotlib.figure import Figure

    curves: dict[str, dict[str, LabelMetrics]] = {}
    for ts in report.training_sets:
        for metrics in ts.labels:
            if metrics.pr_curve:
                curves.setdefault(f"{metrics.kind.value}:{metrics.label}", {})[ts.training_set] = (
                    metrics
                )
    # PR panels for the labels with a curve (imported truth), object labels first: they are
    # what AP is about
    shown = sorted(curves, key=lambda name: (not name.startswith("object:"), name))[:MAX_PANELS]
    panels = len(shown) + 1
    columns = min(3, panels)
    rows = (panels + columns - 1) // columns
    figure = Figure(figsize=(4.2 * columns, 3.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
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
    return figure


def plot_png(report: EvaluationReport) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    with _DRAWING:
        draw_report(report).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_report(report: EvaluationReport, path: Path) -> Path:
    """The figure written to ``path``, in the format its suffix names (PNG for ``.png``)."""
    with _DRAWING:
        draw_report(report).savefig(path, dpi=DPI)
    return path
