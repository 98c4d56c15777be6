"""``autotag export``: a query's items as COCO, JSONL or YOLO, for retraining.

The same export as ``POST /v1/export`` (the ``export`` package), straight from Elasticsearch.
Output: JSONL to ``-o FILE`` (its statement beside it in ``FILE.export.json``) or to standard
output; COCO and YOLO to ``-o DIR`` (a folder) or ``-o FILE.zip``. Files are written under a
temporary name and renamed once complete, so an interrupted export never leaves a file that
looks whole. Exit status: 0 done, 1 refused or failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from api.settings import Settings
from export.spec import Content, ExportFormat, ScoreScale, Strategy

_HELP = """\
Export the items a query finds, for retraining: COCO (annotations.json + results.json),
JSONL (autotag's import format) or YOLO (images.txt, labels/, classes.txt, data.yaml). Each
export states what it contains (export.json, or FILE.export.json beside a JSONL file):
--content predictions (every prediction but rejected ones) or reviewed (accepted and modified
only). --sample uncertain|random|stratified --n N takes a sample instead of every item.
"""


def add_subcommands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``export`` on the ``autotag`` program's subparsers."""
    export = subparsers.add_parser(
        "export", help="export a query's items as COCO, JSONL or YOLO", description=_HELP
    )
    export.add_argument("query", help='a query, e.g. "object_prefix:car AND score < 0.5"')
    export.add_argument(
        "--format", required=True, choices=[v.value for v in ExportFormat], help="output format"
    )
    export.add_argument(
        "-o",
        "--output",
        default=None,
        help="JSONL: a file (default: standard output); COCO, YOLO: a folder or a .zip file",
    )
    export.add_argument(
        "--content", choices=[v.value for v in Content], default=Content.PREDICTIONS.value
    )
    export.add_argument("--training-set", default=None, help="only this training set's predictions")
    export.add_argument("--sample", choices=[v.value for v in Strategy], default=None)
    export.add_argument("--n", type=int, default=None, help="sample size (per label: stratified)")
    export.add_argument("--seed", type=int, default=0, help="random and stratified samples")
    export.add_argument(
        "--score-scale",
        choices=[v.value for v in ScoreScale],
        default=ScoreScale.PROBABILITY.value,
        help="COCO scores: probability (p = (s + 1) / 2, read back exactly by `autotag import`)"
        " or signed (as stored)",
    )
    export.add_argument("--index", default=None, help="items index (default: AUTOTAG_INDEX)")
    export.add_argument("--no-progress", dest="progress", action="store_false")
    export.set_defaults(func=run_export_command)


def _refuse(message: str) -> int:
    Console(stderr=True).print(f"autotag export: {message}", markup=False, highlight=False)
    return 2


def run_export_command(args: argparse.Namespace, settings: Settings) -> int:
    fmt = ExportFormat(args.format)
    if (args.sample is None) != (args.n is None):
        return _refuse("--sample and --n go together")
    if args.n is not None and args.n < 1:
        return _refuse("--n must be at least 1")
    output = None if args.output in (None, "-") else Path(args.output)
    if fmt.is_bundle and output is None:
        return _refuse(f"{fmt.value} is several files: give -o DIR or -o FILE.zip")
    empty_folder = output is not None and output.is_dir() and not any(output.iterdir())
    if output is not None and output.exists() and not empty_folder:
        return _refuse(f"{output} exists; choose a new path")
    if args.index:
        settings = settings.model_copy(update={"index": args.index})
    return asyncio.run(_export(args, settings, fmt, output))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


async def _export(
    args: argparse.Namespace, settings: Settings, fmt: ExportFormat, output: Path | None
) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from api.es_transport import make_client
    from api.slices import lookup_for
    from export.run import Export, selection_for
    from export.spec import ExportSpec, Sampling
    from search import QueryError, parse, render, used_slices

    err = Console(stderr=True)
    # Written under a temporary name, renamed once complete.
    partial = None if output is None else output.with_name(output.name + ".partial")
    folder = partial if fmt.is_bundle and output is not None and output.suffix != ".zip" else None
    es = make_client(settings)
    try:
        lookup = dict(await lookup_for(es, settings.index, args.query))
        try:
            ast = parse(args.query, max_length=settings.query_max_length, slices=lookup)
        except QueryError as error:
            err.print(error.render(), markup=False, highlight=False)
            return 1
        sampling = None
        if args.sample is not None:
            sampling = Sampling(Strategy(args.sample), args.n, args.seed)
        spec = ExportSpec(
            query=render(ast),
            format=fmt,
            content=Content(args.content),
            training_set=args.training_set,
            sampling=sampling,
            score_scale=ScoreScale(args.score_scale),
            slices=used_slices(args.query, lookup),
        )
        job = Export(es, settings.index, spec, selection_for(ast, spec))
        await job.start()
        if sampling is None:
            total: int | None = await job.matching()
        else:
            total = None if sampling.strategy is Strategy.STRATIFIED else sampling.n
        bar = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not args.progress,
        )
        task = bar.add_task("exporting", total=total)

        def progress(done: int) -> None:
            bar.update(task, completed=done)

        with bar:
            if folder is not None:
                async for _ in job.chunks(folder=folder, progress=progress):
                    pass
            elif partial is not None:
                with partial.open("wb") as sink:
                    async for chunk in job.chunks(progress=progress):
                        sink.write(chunk)
            else:
                async for chunk in job.chunks(progress=progress):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except Exception as error:
        if partial is not None:
            _remove(partial)
        message = f"autotag export failed: {type(error).__name__}: {error}"
        err.print(message, markup=False, highlight=False)
        return 1
    finally:
        await es.close()
    manifest = job.manifest or {}
    if output is not None and partial is not None:
        if output.is_dir():
            output.rmdir()  # an empty folder given as the target
        partial.rename(output)
        if not fmt.is_bundle:
            sidecar = output.with_name(output.name + ".export.json")
            sidecar.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    skipped = ", ".join(f"{count} {what}" for what, count in manifest.get("skipped", {}).items())
    predictions = manifest.get("predictions", {})
    summary = (
        f"exported {manifest.get('items', 0)} items ({predictions.get('image', 0)} image and "
        f"{predictions.get('object', 0)} object predictions, {spec.content.value})"
    )
    if skipped:
        summary += f"; skipped: {skipped}"
    if output is not None:
        summary += f" to {output}"
    err.print(summary, markup=False, highlight=False, soft_wrap=True)
    return 0
