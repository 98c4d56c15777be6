"""``autotag slices``: list, show, save, rename and delete saved slices.

The same checks as the API (``api.slices``), straight against Elasticsearch like ``autotag
import``: no server and no review key needed, the cluster's credentials are the permission.
Exit status: 0 done, 1 refused (a bad query, a slice in use, no such slice), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console

from api.settings import Settings


def add_subcommands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``slices`` on the ``autotag`` program's subparsers."""
    slices = subparsers.add_parser(
        "slices",
        help='saved slices: named queries used as `slice = "name"`',
        description="Saved slices of the index (AUTOTAG_INDEX or --index): named queries that "
        'a query names as `slice = "name"`. A slice is checked when saved; one that other '
        "slices use is not deleted or renamed unless asked to.",
    )
    slices.add_argument("--index", default=None, help="items index (default: AUTOTAG_INDEX)")
    actions = slices.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every saved slice")
    show = actions.add_parser("show", help="one slice: its query, expansion and users")
    show.add_argument("name")
    put = actions.add_parser("put", help="save a query under a name (replaces that slice)")
    put.add_argument("name")
    put.add_argument("query")
    put.add_argument("--description", default=None)
    delete = actions.add_parser("delete", help="delete a slice")
    delete.add_argument("name")
    delete.add_argument(
        "--force", action="store_true", help="even if other slices use it (they stop resolving)"
    )
    rename = actions.add_parser("rename", help="rename a slice")
    rename.add_argument("name")
    rename.add_argument("to")
    rename.add_argument(
        "--update-dependants",
        action="store_true",
        help="rewrite the slices that use it to the new name",
    )
    slices.set_defaults(func=run_slices_command)


def run_slices_command(args: argparse.Namespace, settings: Settings) -> int:
    from api import slices as service
    from api.errors import ApiError
    from api.es_transport import make_client
    from api.models import SLICE_NAME_PATTERN
    from search import QueryError

    if args.index:
        settings = settings.model_copy(update={"index": args.index})
    out, err = Console(), Console(stderr=True)
    names = [getattr(args, key) for key in ("name", "to") if getattr(args, key, None) is not None]
    for name in names:
        if not re.fullmatch(SLICE_NAME_PATTERN, name):
            err.print(
                f"autotag slices: `{name}` is not a slice name (letters, digits, _ . -; "
                "not starting with . or -)",
                markup=False,
            )
            return 2

    async def run(work: Callable[[Any], Awaitable[None]]) -> None:
        es = make_client(settings)
        try:
            await work(es)
        finally:
            await es.close()

    async def work(es: Any) -> None:
        index = settings.index
        if args.action == "list":
            saved = await service.saved_slices(es, index)
            for row in service.info_list(saved, settings.query_max_length):
                users = f"  (used by {', '.join(row['used_by'])})" if row["used_by"] else ""
                broken = "  [does not resolve]" if row["error"] else ""
                out.print(f"{row['name']}: {row['query']}{users}{broken}", markup=False)
            if not saved:
                err.print("no slices saved", markup=False)
        elif args.action == "show":
            info = await service.get_slice(es, settings, args.name)
            for key, value in info.model_dump().items():
                out.print(f"{key}: {value}", markup=False)
        elif args.action == "put":
            info, created = await service.put_slice(
                es, settings, args.name, args.query, args.description
            )
            verb = "saved" if created else "replaced"
            out.print(f"{verb} {info.name}: {info.expansion}", markup=False)
        elif args.action == "delete":
            unresolved = await service.delete_slice(es, settings, args.name, force=args.force)
            out.print(f"deleted {args.name}", markup=False)
            if unresolved:
                err.print(f"no longer resolve: {', '.join(unresolved)}", markup=False)
        elif args.action == "rename":
            info, updated = await service.rename_slice(
                es, settings, args.name, args.to, update_dependants=args.update_dependants
            )
            out.print(f"renamed {args.name} to {info.name}", markup=False)
            if updated:
                out.print(f"rewritten to use {info.name}: {', '.join(updated)}", markup=False)

    try:
        asyncio.run(run(work))
    except QueryError as error:
        err.print(error.render(), markup=False, highlight=False)
        return 1
    except ApiError as error:
        err.print(f"autotag slices: {error.message}", markup=False, highlight=False)
        detail = error.details.get("error")
        if isinstance(detail, dict) and detail.get("rendered"):
            err.print(detail["rendered"], markup=False, highlight=False)
        elif error.details.get("dependants"):
            flag = "--update-dependants" if args.action == "rename" else "--force"
            err.print(f"hint: change or delete them first, or pass {flag}", markup=False)
        return 1
    return 0
