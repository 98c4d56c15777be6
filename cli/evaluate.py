"""``autotag evaluate``: the evaluation of ``/v1/evaluate`` from the command line, with
``--plot`` for PR curves and the reliability diagram."""

from __future__ import annotations

import argparse
import asyncio
import sys
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from api.settings import Settings
from evaluation.report import REVIEWS, EvaluationReport


def add_subcommand(subparsers: argparse._SubParsersAction[Any]) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="which model version is better: precision, recall, AP, calibration, comparison",
        description="Evaluate training sets on a slice (a query) against the review decisions"
        " or an imported ground-truth source; with two or more training sets, compare them"
        " pairwise on the items both tagged (bootstrap 95%% intervals).",
    )
    evaluate.add_argument("query", help='the slice, e.g. "dataset = val"')
    evaluate.add_argument(
        "--training-set", "-t", action="append", required=True, dest="training_sets",
        help="a training set to evaluate; repeat to compare",
    )  # fmt: skip
    evaluate.add_argument(
        "--truth", default=REVIEWS, help='"reviews" (default) or an imported ground-truth source'
    )
    evaluate.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    evaluate.add_argument(
        "--score-threshold", type=float, default=0.5, help="score threshold (default 0.5)"
    )
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    evaluate.add_argument("--index", default=None, help="index or alias (default: AUTOTAG_INDEX)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--plot", type=Path, help="draw PR curves and the reliability diagram")
    evaluate.set_defaults(func=run_evaluate_command)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(report: EvaluationReport, console: Console) -> None:
    """The report as tables, the calibration per band and the verdicts."""
    console.print(
        f"[bold]{report.query}[/bold]: {report.items} items, truth {report.truth}, "
        f"IoU {report.iou_threshold:.2f}, score >= {report.score_threshold}"
    )
    reviews = report.truth == REVIEWS  # columns reviews cannot fill are left out
    for ts in report.training_sets:
        table = Table(title=f"{ts.training_set} ({ts.items} items)")
        columns = ["kind", "label", "truth", "TP", "FP", "FN", "precision", "recall", "F1", "AP"]
        columns += ["AP@[.5:.95]", "high band precision"]
        if reviews:
            columns = [c for c in columns if c not in ("truth", "FN", "recall", "F1", "AP")]
            columns = [c for c in columns if c != "AP@[.5:.95]"]
        for column in columns:
            left = column in ("kind", "label")
            table.add_column(column, justify="left" if left else "right", no_wrap=left)
        for m in ts.labels:
            high = next((b for b in m.calibration if b.band == "high"), None)
            cells = {
                "kind": m.kind.value,
                "label": m.label,
                "truth": "-" if m.truth is None else str(m.truth),
                "TP": str(m.tp),
                "FP": str(m.fp),
                "FN": "-" if m.fn is None else str(m.fn),
                "precision": _number(m.precision),
                "recall": _number(m.recall),
                "F1": _number(m.f1),
                "AP": _number(m.ap),
                "AP@[.5:.95]": _number(m.ap_50_95),
                "high band precision": "-"
                if high is None or high.precision is None
                else f"{high.precision:.3f} ({high.predictions})",
            }
            table.add_row(*(cells[c] for c in columns))
        console.print(table)
        if ts.mean_ap is not None:
            console.print(f"mean AP {ts.mean_ap:.3f}, mean AP@[.5:.95] {_number(ts.mean_ap_50_95)}")
        if ts.confusions:
            shown = ", ".join(
                f"{c.original_label} -> {c.label} ({c.count})" for c in ts.confusions[:10]
            )
            console.print(f"confusions from reviews: {shown}")
    for pair in report.comparisons:
        console.print(
            f"[bold]{pair.training_set_a} vs {pair.training_set_b}[/bold] "
            f"({pair.items} items both tagged, {pair.bootstrap} bootstrap replicates):"
        )
        for row in pair.labels:
            console.print(f"  {row.verdict}", highlight=False)
    for line in report.unknown:
        console.print(f"[yellow]unknown:[/yellow] {line}")
    for line in report.notes:
        console.print(f"note: {line}")


def run_evaluate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``autotag evaluate``."""
    from pydantic import ValidationError

    from api.es_transport import make_client
    from evaluation.plot import plot_report
    from evaluation.report import EvaluationOptions
    from evaluation.run import EvaluationError, Workers, evaluate
    from search import QueryError, parse, render, translate
    from store.connection import ensure_elasticsearch

    err = Console(stderr=True)
    try:
        tree = parse(args.query, max_length=settings.query_max_length)
        options = EvaluationOptions(
            training_sets=args.training_sets,
            truth=args.truth,
            iou_threshold=args.iou,
            score_threshold=args.score_threshold,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
    except QueryError as error:
        err.print(error.render(), markup=False, highlight=False)
        return 2
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            err.print(f"autotag evaluate: {where}: {problem['msg']}", highlight=False)
        return 2
    urls = ensure_elasticsearch(settings)
    settings = settings.model_copy(update={"es_url": ",".join(urls)})

    async def run() -> EvaluationReport:
        client = make_client(settings)
        try:
            return await evaluate(
                client,
                args.index or settings.index,
                translate(tree),
                render(tree),
                options,
                keep_alive=settings.pit_keep_alive,
                workers=Workers(settings.evaluate_workers, partial(make_client, settings)),
            )
        finally:
            await client.close()

    try:
        report = asyncio.run(run())
    except EvaluationError as error:
        err.print(f"autotag evaluate: {error.message} {error.details or ''}", highlight=False)
        return 1
    if args.json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        print_report(report, Console())
    if args.plot is not None:
        plot_report(report, args.plot)
        err.print(f"plots written to {args.plot}")
    return 0
