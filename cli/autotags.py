"""``autotag autotags create|refine|score|list|delete``: autotags trained from examples."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from store.settings import StoreSettings

_HELP = """\
Autotags are trained from examples: a linear model on the items' stored image embeddings,
fitted from positive items (ids or a query) and negatives (ids, a query, or random items),
then every item with an embedding gets an image prediction labelled with the autotag's name,
scored in [-1, 1] (0 on the decision boundary), under the training set autotag:NAME@VERSION.
Review some of them (accept/reject), then `refine` fits the next version from the reviews.
"""


def _ids(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_subcommand(subparsers: argparse._SubParsersAction[Any]) -> None:
    command = subparsers.add_parser(
        "autotags", help="autotags trained from examples", description=_HELP
    )
    command.add_argument("--index", default=None, help="items index or alias (AUTOTAG_INDEX)")
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="fit version 1 from examples and score")
    create.add_argument("name", help="the label, e.g. sun_glare")
    create.add_argument("--positives", type=_ids, default=(), metavar="ID,ID", help="item ids")
    create.add_argument("--positives-query", default=None, help="or a query selecting them")
    create.add_argument("--negatives", type=_ids, default=(), metavar="ID,ID")
    create.add_argument("--negatives-query", default=None, help="default: random items")
    create.add_argument("--description", default=None)
    create.add_argument("--seed", type=int, default=0, help="of the random negatives")

    for action, helptext in (
        ("refine", "fit the next version from the reviews since the last one, and score"),
        ("score", "score what the latest version has not scored yet (resume a stopped job)"),
        ("delete", "take every version's predictions off the items, then the autotag"),
    ):
        sub = actions.add_parser(action, help=helptext)
        sub.add_argument("name")
    actions.add_parser("list", help="the autotags and their versions")
    for sub in actions.choices.values():
        sub.add_argument("--no-progress", dest="progress", action="store_false")
    command.set_defaults(func=run_autotags_command)


def _bar(
    console: Console, label: str, enabled: bool
) -> tuple[Progress, Callable[[int, int], None]]:
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, update


def run_autotags_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from autotags import jobs
    from autotags.registry import AutotagError, Registry
    from autotags.training import Examples
    from store.connection import connect

    console = Console(stderr=True)
    index = args.index or settings.index
    client = connect(settings=settings, request_timeout=settings.es_bulk_timeout)
    try:
        if args.action == "list":
            print_autotags(list(Registry(client, index).all()))
            return 0
        label = "deleting" if args.action == "delete" else "scoring"
        bar, update = _bar(console, label, getattr(args, "progress", True))
        with bar:
            if args.action == "create":
                autotag = jobs.create(
                    client,
                    index,
                    args.name,
                    Examples(args.positives, args.positives_query),
                    Examples(args.negatives, args.negatives_query),
                    description=args.description,
                    seed=args.seed,
                    progress=update,
                )
            elif args.action == "refine":
                autotag = jobs.refine(client, index, args.name, progress=update)
            elif args.action == "score":
                jobs.score(client, index, args.name, progress=update)
                autotag = Registry(client, index).require(args.name)
            else:
                changed = jobs.delete(client, index, args.name, progress=update)
                print(f"autotag {args.name} deleted; {changed} items changed")
                return 0
    except AutotagError as error:
        console.print(f"[red]autotag autotags {args.action}: {error}[/red]", highlight=False)
        return 1
    print_autotags([autotag])
    return 0 if autotag.latest.scoring.state == "done" else 1


def print_autotags(autotags: list[Any]) -> None:
    """One line per version: what it was trained on and how far its scoring got."""
    if not autotags:
        print("no autotags")
    for autotag in autotags:
        for v in autotag.versions:
            print(
                f"{autotag.name} v{v.version}  {v.training_set}  positives {len(v.positives)}  "
                f"negatives {len(v.negatives)} ({v.random_negatives} random)  "
                f"scored {v.scoring.scored}/{v.scoring.total}  {v.scoring.state}"
            )
