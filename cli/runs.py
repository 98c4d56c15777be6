"""``autotag worker``, ``autotag runs submit|list|watch|cancel`` and ``autotag watch DIR``.

The commands talk to Elasticsearch through the run store (:mod:`store.runs`), the same
operations the API runs, so they work whether or not the API is up.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from elasticsearch import Elasticsearch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from store.settings import StoreSettings

WATCH_INTERVAL_S: Final = 0.5


def add_subcommands(commands: argparse._SubParsersAction[Any]) -> None:
    worker = commands.add_parser(
        "worker",
        help="execute runs: claim batches, tag them, write the predictions",
        description="Execute runs (POST /v1/runs, incremental tagging). Start as many as you "
        "like, on one machine or several: they share runs by claiming batches under leases. "
        "Settings: AUTOTAG_RUN_BATCH_SIZE, AUTOTAG_RUN_LEASE_S, AUTOTAG_WORKER_POLL_S, "
        "AUTOTAG_WORKER_DEVICE and the cluster's.",
    )
    worker.add_argument("--name", help="name in leases and logs (default: worker-<random>)")
    worker.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODELS",
        help="load this model set (e.g. demo) before taking work, so the first batch does not "
        "wait for it; repeatable",
    )
    worker.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit once no run is queued or running (for scripts)",
    )
    worker.set_defaults(func=run_worker_command)

    runs = commands.add_parser("runs", help="submit, list, watch or cancel runs")
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser(
        "submit", help="tag a query's (or saved slice's) items or a dataset; workers execute it"
    )
    chosen = submit.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--query", help="what to tag, e.g. 'slice = \"night_highway\"'")
    chosen.add_argument("--dataset", help="tag every item of this dataset")
    submit.add_argument("--training-set", required=True, help="the model version to write")
    submit.add_argument(
        "--models", default="demo", help="a model set of the catalogue (default: demo)"
    )
    submit.add_argument("--watch", action="store_true", help="then watch it to the end")
    submit.add_argument("--interval", type=float, default=WATCH_INTERVAL_S, help="seconds")
    submit.set_defaults(func=submit_run_command)
    listing = actions.add_parser("list", help="the most recent runs")
    listing.add_argument("--size", type=int, default=20)
    listing.add_argument("--state", action="append", default=[], help="repeatable")
    listing.set_defaults(func=list_runs_command)
    watch = actions.add_parser("watch", help="a run's progress bar until it finishes")
    watch.add_argument("run_id", metavar="ID")
    watch.add_argument("--interval", type=float, default=WATCH_INTERVAL_S, help="seconds")
    watch.set_defaults(func=watch_run_command)
    cancel = actions.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run_id", metavar="ID")
    cancel.set_defaults(func=cancel_run_command)

    folder = commands.add_parser(
        "watch",
        help="register images dropped into a folder",
        description="Register every image under DIR (recursively) as an item, then every new "
        "one as it appears (polling; a file is registered once its size and time stop "
        "changing). Item ids are DATASET/relative/path, as `autotag index DIR` names them. "
        "Datasets with an auto-tagging setting get their new items tagged by the workers.",
    )
    folder.add_argument("folder", type=Path, metavar="DIR")
    folder.add_argument("--dataset", help="dataset of the items (default: the folder's name)")
    folder.add_argument("--interval", type=float, default=1.0, help="seconds between scans")
    folder.add_argument(
        "--models",
        help="also set the dataset's auto-tagging to this model set (needs --training-set)",
    )
    folder.add_argument("--training-set", help="training set of the auto-tagging")
    folder.add_argument("--once", action="store_true", help="register what is there now and exit")
    folder.set_defaults(func=watch_folder_command)


def _client(settings: StoreSettings) -> Elasticsearch:
    from store.connection import connect, ensure_elasticsearch

    return connect(ensure_elasticsearch(settings), settings=settings)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name in ("autotag.worker", "autotag.runs"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False  # a library's basicConfig() would print every line twice
    # The client's own retry warnings (with tracebacks) repeat what the back-off line says.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)


# --- autotag worker ---------------------------------------------------------------------


def run_worker_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from store.connection import ensure_elasticsearch
    from worker.loop import Worker
    from worker.settings import WorkerSettings

    configured = WorkerSettings(**_explicit(settings))
    urls = ensure_elasticsearch(configured)
    configured = configured.model_copy(update={"es_url": ",".join(urls)})
    _log_to_stderr()
    worker = Worker(configured, name=args.name)

    def stop(signum: int, _: Any) -> None:
        logging.getLogger("autotag.worker").info(
            "%s: %s, stopping", worker.name, signal.Signals(signum).name
        )
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.preload:
        from store.model_choice import CatalogueError, UnknownModelsError, choose, load_catalogue

        try:
            catalogue = load_catalogue(configured.models_file)
            chosen = [choose(catalogue, name) for name in args.preload]
        except (CatalogueError, UnknownModelsError) as error:
            print(f"autotag worker: {error}", file=sys.stderr)
            return 2
        for models in chosen:
            worker.models.get(models)
    logging.getLogger("autotag.worker").info("%s: ready", worker.name)
    stats = worker.run(exit_when_idle=args.exit_when_idle)
    print(
        f"{worker.name}: {stats.batches} batches, {stats.items} items, "
        f"{stats.runs_planned} runs planned, {stats.retries} batches retried, "
        f"{stats.backoffs} back-offs",
        file=sys.stderr,
    )
    return 0


def _explicit(settings: StoreSettings) -> dict[str, Any]:
    """The settings the entry point read, to build a worker's model on top of them."""
    return {name: getattr(settings, name) for name in StoreSettings.model_fields}


# --- autotag runs ----------------------------------------------------------------------------


def list_runs_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from store.calls import drive
    from store.runs import RunState, list_runs

    views = drive(
        _client(settings),
        list_runs(settings.runs_index, states=[RunState(s) for s in args.state], size=args.size),
    )
    table = Table()
    table.add_column("run", no_wrap=True)
    for name in ("state", "training set", "models", "selection", "done/total", "failed"):
        table.add_column(name)
    for view in views:
        items = view["items"]
        total = "?" if items["total"] is None else str(items["total"])
        table.add_row(
            view["run_id"],
            view["state"],
            view["training_set"],
            view["models"],
            _selection(view["selection"]),
            f"{items['done']}/{total}",
            str(items["failed"]),
        )
    Console().print(table)
    return 0


def _selection(selection: Mapping[str, Any]) -> str:
    if selection["kind"] == "query":
        return f"query {selection.get('query')}"
    if selection["kind"] == "dataset":
        return f"dataset {selection.get('dataset')}"
    return f"{selection.get('items')} items"


def watch_run_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from store.calls import drive
    from store.runs import RunState, get_run

    client = _client(settings)
    console = Console(stderr=True)
    view = drive(client, get_run(settings.runs_index, args.run_id, failures=False))
    if view is None:
        console.print(f"[red]autotag runs watch: no run {args.run_id}[/red]", highlight=False)
        return 2
    progress = Progress(
        TextColumn("[bold]{task.fields[state]:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", style="cyan"),
        TextColumn("eta {task.fields[eta]}"),
        TimeElapsedColumn(),
        TextColumn("failed {task.fields[failed]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("run", total=None, **_fields(view))
        while True:
            items = view["items"]
            progress.update(
                task,
                total=items["total"],
                completed=items["done"] + items["in_progress"],
                **_fields(view),
            )
            if RunState(view["state"]).finished:
                break
            time.sleep(args.interval)
            view = drive(client, get_run(settings.runs_index, args.run_id, failures=False)) or view
    view = drive(client, get_run(settings.runs_index, args.run_id)) or view
    _report(view)
    return 0 if view["state"] == RunState.DONE.value else 1


def _fields(view: Mapping[str, Any]) -> dict[str, Any]:
    rate, eta = view["rate"], view["eta_seconds"]
    return {
        "state": view["state"],
        "rate": "-- items/s" if rate is None else f"{rate:.1f} items/s",
        "eta": "-:--:--" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta)),
        "failed": view["items"]["failed"],
    }


def _report(view: Mapping[str, Any]) -> None:
    items = view["items"]
    table = Table(title=f"run {view['run_id']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = view["rate"]
    for name, value in (
        ("state", view["state"]),
        ("training set", view["training_set"]),
        ("models", view["models"]),
        ("items", items["total"]),
        ("tagged", items["tagged"]),
        ("skipped (already tagged)", items["skipped"]),
        ("failed", items["failed"]),
        ("predictions written", items["predictions"]),
        ("items/s", "--" if rate is None else f"{rate:.1f}"),
    ):
        table.add_row(name, str(value))
    Console().print(table)
    console = Console(stderr=True)
    for failure in view["failures"][:20]:
        console.print(
            f"[yellow]failed[/yellow] {failure.get('item_id')} ({failure.get('stage')}): "
            f"{failure.get('reason')}",
            highlight=False,
        )
    if items["failed"] > 20:
        console.print(f"... and {items['failed'] - 20} more (GET /v1/runs/{view['run_id']})")
    if view.get("error"):
        console.print(f"[red]{view['error']}[/red]", highlight=False)


def submit_run_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    """Checked as ``POST /v1/runs`` checks it: the models (known, their weights here) and the
    query (saved slices resolved, errors with a caret), before anything is queued."""
    import asyncio

    from store.calls import drive
    from store.model_choice import UnknownModelsError, choose, load_catalogue, weight_problems
    from store.runs import Selection, SelectionKind, new_run, submit_run

    err = Console(stderr=True)
    try:
        models = choose(load_catalogue(settings.models_file), args.models)
    except UnknownModelsError as error:
        err.print(f"autotag runs submit: {error}", markup=False, highlight=False)
        return 2
    problems = weight_problems(models)
    if problems:
        err.print(
            f"autotag runs submit: the weights of models {args.models!r} cannot be had here: "
            + "; ".join(problems),
            markup=False,
            highlight=False,
        )
        return 2
    if args.dataset is not None:
        selection = Selection(SelectionKind.DATASET, dataset=args.dataset)
    else:
        resolved = asyncio.run(_resolve_query(args.query, settings))
        if isinstance(resolved, str):
            err.print(resolved, markup=False, highlight=False)
            return 1
        selection = resolved
    run = new_run(
        selection=selection,
        models=models,
        training_set=args.training_set,
        items_index=settings.index,
    )
    drive(_client(settings), submit_run(settings.runs_index, run))
    run_id = str(run["run_id"])
    print(run_id)
    if not args.watch:
        return 0
    args.run_id = run_id
    return watch_run_command(args, settings)


async def _resolve_query(text: str, settings: StoreSettings) -> Any:
    """The query as a run stores it, or the rendered error (with its caret) to print."""
    from api.es_transport import make_client
    from api.settings import Settings
    from api.slices import lookup_for
    from search import QueryError, parse, render, translate
    from search.similarity import has_similarity
    from store.runs import Selection, SelectionKind

    served = settings if isinstance(settings, Settings) else Settings(**_explicit(settings))
    es = make_client(served)
    try:
        lookup = dict(await lookup_for(es, served.index, text))
    finally:
        await es.close()
    try:
        ast = parse(text, max_length=served.query_max_length, slices=lookup)
        if has_similarity(ast):
            return "autotag runs submit: a run takes every item a query selects; a similarity " + (
                "clause only ranks search hits"
            )
        return Selection(SelectionKind.QUERY, query=render(ast), dsl=translate(ast))
    except QueryError as error:
        rendered: str = error.render()
        return rendered


def cancel_run_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from store.calls import drive
    from store.runs import cancel_run

    outcome = drive(_client(settings), cancel_run(settings.runs_index, args.run_id))
    if outcome is None:
        print(f"autotag runs cancel: no run {args.run_id}", file=sys.stderr)
        return 2
    if not outcome.changed:
        print(f"autotag runs cancel: the run already finished: {outcome.state}", file=sys.stderr)
        return 1
    print(f"run {args.run_id} cancelled")
    return 0


# --- autotag watch DIR -----------------------------------------------------------------------


def watch_folder_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    from cli.watch import FolderWatcher, set_autotag

    console = Console(stderr=True)
    if not args.folder.is_dir():
        console.print(f"[red]autotag watch: no folder {args.folder}[/red]", highlight=False)
        return 2
    if (args.models is None) != (args.training_set is None):
        console.print("[red]autotag watch: --models and --training-set go together[/red]")
        return 2
    client = _client(settings)
    dataset = args.dataset or args.folder.resolve().name
    if args.models is not None:
        problem = set_autotag(client, settings, dataset, args.models, args.training_set)
        if problem is not None:
            console.print(f"[red]autotag watch: {problem}[/red]", highlight=False)
            return 2
        console.print(
            f"dataset {dataset}: new items are tagged with models {args.models} under training "
            f"set {args.training_set}",
            highlight=False,
        )
    watcher = FolderWatcher(client, settings, args.folder, dataset=dataset, console=console)
    if args.once:
        watcher.scan(settle_s=0.0)
        return 0
    console.print(f"watching {args.folder} (dataset {dataset}); Ctrl-C stops", highlight=False)
    try:
        while True:
            watcher.scan()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
