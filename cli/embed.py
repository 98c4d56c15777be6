"""``autotag embed``: image embeddings for items that lack one (``indexer.backfill``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from store.settings import StoreSettings

_HELP = """\
Compute the CLIP image embedding of every item that has none (items indexed before embeddings
existed, or with --no-embeddings) from its uri, and write only that field: predictions, review
states and history are not touched, so it runs safely next to reviews. Stopped, it resumes
where it was; run again, it finds nothing to do. The model must be the index's embedding model
(recorded on the index by the first run that wrote embeddings).
"""


def add_subcommand(subparsers: argparse._SubParsersAction[Any]) -> None:
    command = subparsers.add_parser(
        "embed", help="add image embeddings to items that lack one", description=_HELP
    )
    command.add_argument("--index", default=None, help="index or alias (default AUTOTAG_INDEX)")
    command.add_argument("--clip-model", default=None, help="open_clip architecture, e.g. ViT-B-32")
    command.add_argument(
        "--clip-weights", default=None, help="checkpoint file, local-dir:FOLDER or pretrained tag"
    )
    command.add_argument(
        "--demo-models",
        action="store_true",
        help="the shipped tiny CLIP (synthetic driving scenes only)",
    )
    command.add_argument(
        "--query", default=None, help="only items matching this query, e.g. 'dataset = drives'"
    )
    command.add_argument("--batch-size", type=int, default=32, help="images per model batch")
    command.add_argument("--workers", type=int, default=None, help="decoding worker processes")
    command.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    command.add_argument(
        "--failures-file",
        type=Path,
        default=Path(".autotag") / "failures.jsonl",
        help="append failed items here as JSONL",
    )
    command.add_argument("--no-progress", dest="progress", action="store_false")
    command.set_defaults(func=run_embed_command)


def run_embed_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from embeddings.clip import ClipEncoder
    from indexer import models as shipped
    from indexer.backfill import run_backfill
    from indexer.clip_tagger import ClipTagger  # noqa: F401  registers the shipped configs
    from indexer.pipeline import default_workers, resolve_device
    from indexer.report import FailureLog
    from search import QueryError, parse, translate
    from store.connection import connect

    console = Console(stderr=True)
    if args.demo_models == bool(args.clip_weights):
        console.print(
            "[red]autotag embed: give --clip-weights (and --clip-model) or --demo-models[/red]"
        )
        return 2
    try:
        query = translate(parse(args.query)) if args.query else None
    except QueryError as error:
        error.query = error.query or args.query
        console.print(error.render(), markup=False, highlight=False)
        return 2
    try:
        device = resolve_device(args.device)
        encoder = ClipEncoder(
            args.clip_model or "",
            shipped.TINY_CLIP if args.demo_models else str(args.clip_weights),
            device=device,
        )
        client = connect(settings=settings, request_timeout=settings.es_bulk_timeout)
        with FailureLog(args.failures_file, training_set="(embed)") as failure_log:
            summary = run_backfill(
                client,
                args.index or settings.index,
                encoder,
                query=query,
                batch_size=args.batch_size,
                workers=default_workers(device) if args.workers is None else args.workers,
                progress=args.progress,
                console=console,
                failure_log=failure_log,
            )
    except Exception as error:
        console.print(f"[red]autotag embed: {error}[/red]", highlight=False)
        return 1
    Console().print(summary.table("autotag embed"))
    for failure in summary.failures[:20]:
        console.print(f"failed {failure.item_id} ({failure.stage}): {failure.reason}", markup=False)
    if summary.failures:
        console.print(f"failures appended to {args.failures_file}")
    return 0
