"""``autotag migrate``: copy the items index to the current schema version (``store.migrate``)."""

from __future__ import annotations

import argparse
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
Copy the items index behind its alias (default: the AUTOTAG_INDEX setting) to a new index with
the current schema version's mapping, check that every item arrived, then move the alias in one
atomic step. Writes to the old index are blocked while copying (searches keep working); reads
never stop. A run that stops half way resumes when run again (--abort undoes it instead). The
old index is kept, read-only, unless --delete-old.
"""


def add_subcommand(subparsers: argparse._SubParsersAction[Any]) -> None:
    command = subparsers.add_parser(
        "migrate", help="copy the items index to the current schema version", description=_HELP
    )
    command.add_argument("--index", default=None, help="alias to migrate (default AUTOTAG_INDEX)")
    command.add_argument("--batch", type=int, default=500, help="documents per bulk request")
    command.add_argument(
        "--delete-old", action="store_true", help="delete the old index once the alias moved"
    )
    command.add_argument(
        "--abort",
        action="store_true",
        help="undo an unfinished migration: delete the partial copy, allow writes again",
    )
    command.add_argument("--no-progress", dest="progress", action="store_false")
    command.set_defaults(func=run_migrate_command)


def run_migrate_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from store.connection import connect
    from store.migrate import MigrationError, abort, migrate

    console = Console(stderr=True)
    alias = args.index or settings.index
    client = connect(settings=settings, request_timeout=settings.es_bulk_timeout)
    try:
        if args.abort:
            undone = abort(client, alias)
            print(
                f"migration of {alias} aborted: {undone.target} deleted, {undone.source} writable"
            )
            return 0
        with Progress(
            TextColumn("[bold]copying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not args.progress,
        ) as progress:
            task = progress.add_task("copy", total=None)

            def started(plan: Any, documents: int, resumed: bool) -> None:
                how = "resuming the copy" if resumed else "copying"
                console.print(
                    f"{alias}: {plan.source} (schema v{plan.source_version}) -> {plan.target} "
                    f"(v{plan.target_version}), {how} {documents} items; writes to "
                    f"{plan.source} are blocked until the alias moves",
                    highlight=False,
                )
                progress.update(task, total=documents)

            report = migrate(
                client,
                alias,
                batch=args.batch,
                delete_old=args.delete_old,
                on_start=started,
                on_progress=lambda n: progress.advance(task, n),
            )
    except MigrationError as error:
        console.print(f"[red]autotag migrate: {error}[/red]", highlight=False)
        return 1
    found = report.plan
    if not report.swapped:
        print(f"{alias} -> {found.source} is at schema version {found.source_version}: up to date")
        return 0
    old = "deleted" if report.old_deleted else "kept, read-only"
    print(
        f"{alias} -> {found.target}: {report.target_count} items ({report.copied} copied now, "
        f"{report.already_there} by an earlier run); {found.source} {old}"
    )
    return 0
