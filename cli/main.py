"""The ``autotag`` command: one entry point for the whole product.

``autotag up`` is the main job (Elasticsearch, index, sample, API, a worker); ``autotag es``
manages the local cluster; ``index``/``import``/``import-truth`` run the indexer; ``worker``
executes runs, ``runs`` submits, lists, watches and cancels them, ``watch`` registers a folder's
new images; ``migrate`` copies the index to the current schema, ``embed`` adds image embeddings,
``autotags`` trains autotags from examples; ``evaluate`` says which model version is better;
``slices`` manages saved slices; ``export`` writes a query's items for retraining; ``serve`` runs
the API; ``update-mapping`` adds a later version's fields to an existing index.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError

from api.settings import Settings
from cli.autotags import add_subcommand as add_autotags_subcommand
from cli.embed import add_subcommand as add_embed_subcommand
from cli.evaluate import add_subcommand as add_evaluate_subcommand
from cli.export import add_subcommands as add_export_subcommands
from cli.indexing import add_subcommands as add_indexer_subcommands
from cli.migrate import add_subcommand as add_migrate_subcommand
from cli.runs import add_subcommands as add_run_subcommands
from cli.slices import add_subcommands as add_slices_subcommands
from store.model_choice import CatalogueError
from store.provision import LocalCluster, ProvisionError
from store.settings import DEFAULT_CLUSTER_NAME


def _cluster_from_args(args: argparse.Namespace, settings: Settings) -> LocalCluster:
    """The cluster as recorded (or as it would be first started), with the settings, then the
    options, applied."""
    from store.connection import local_cluster

    base = local_cluster(settings, args.name)
    http = args.http_port or base.http_port
    moved = args.http_port is not None and args.http_port != base.http_port
    base.nodes = args.nodes or base.nodes
    base.transport_port = args.transport_port or (http + 100 if moved else base.transport_port)
    base.http_port = http
    base.heap = args.heap or base.heap
    return base


def _es(args: argparse.Namespace, settings: Settings) -> int:
    from store.connection import connect

    hosts = settings.es_hosts()
    if args.action == "status" and hosts is not None and args.name == DEFAULT_CLUSTER_NAME:
        health = connect(hosts, settings=settings).cluster.health()
        print(f"{', '.join(hosts)}: {health['status']}, {health['number_of_nodes']} node(s)")
        return 0 if health["status"] in ("green", "yellow") else 1
    cluster = _cluster_from_args(args, settings)
    if args.action == "start":
        started = time.monotonic()
        status = cluster.start()
        print(status.describe())
        print(f"ready in {time.monotonic() - started:.1f}s; data in {cluster.root}")
        return 0
    if args.action == "stop":
        cluster.destroy() if args.destroy else cluster.stop()
        print(f"cluster {cluster.name} stopped" + (" and deleted" if args.destroy else ""))
        return 0
    status = cluster.status()
    print(status.describe())
    return 0 if status.healthy else 1


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from cli.up import run_demo

    return run_demo(
        settings,
        serve=not args.no_serve,
        host=args.host,
        port=args.port,
        with_worker=not args.no_worker,
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from cli.serve import serve
    from store.connection import ensure_elasticsearch

    urls = ensure_elasticsearch(settings)
    serve(settings.model_copy(update={"es_url": ",".join(urls)}), host=args.host, port=args.port)
    return 0


def _update_mapping(args: argparse.Namespace, settings: Settings) -> int:
    from store.admin import update_mapping
    from store.connection import connect, ensure_elasticsearch

    index = args.index or settings.index
    client = connect(ensure_elasticsearch(settings), settings=settings)
    if not client.indices.exists(index=index):
        print(f"autotag: no index or alias {index!r}", file=sys.stderr)
        return 1
    for concrete, added in update_mapping(client, index).items():
        print(f"{concrete}: " + (f"added {', '.join(added)}" if added else "nothing to add"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autotag", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start Elasticsearch, load the sample, serve the API")
    up.add_argument("--no-serve", action="store_true", help="stop after loading the sample")
    up.add_argument(
        "--no-worker",
        action="store_true",
        help="serve without starting a worker (workers run elsewhere, e.g. compose's)",
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.set_defaults(func=_up)

    es = commands.add_parser("es", help="manage the local Elasticsearch cluster")
    es.add_argument("action", choices=("start", "stop", "status"))
    es.add_argument(
        "--name",
        default=DEFAULT_CLUSTER_NAME,
        help=f"cluster name (default: {DEFAULT_CLUSTER_NAME})",
    )
    es.add_argument("--nodes", type=int, help="number of nodes (default 1)")
    es.add_argument(
        "--http-port", type=int, help="first node's HTTP port (default 9200, AUTOTAG_ES_PORT)"
    )
    es.add_argument("--transport-port", type=int, help="first transport port (HTTP + 100)")
    es.add_argument("--heap", help="heap per node, e.g. 512m (default 1g, AUTOTAG_ES_HEAP)")
    es.add_argument("--destroy", action="store_true", help="with stop: delete the data too")
    es.set_defaults(func=_es)

    serve = commands.add_parser(
        "serve", help="serve the HTTP API (settings: AUTOTAG_*, AUTOTAG_ES_URL or ES_URL)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)

    mapping = commands.add_parser(
        "update-mapping",
        help="add this version's new fields (e.g. box geometry) to an existing items index",
        description="Add the fields of the current mapping that an existing index lacks (a"
        " put-mapping: existing fields are left as they are). Documents written before get"
        " values for new derived fields when they are written again.",
    )
    mapping.add_argument("--index", help="index or alias (default: AUTOTAG_INDEX, autotag-items)")
    mapping.set_defaults(func=_update_mapping)

    add_indexer_subcommands(commands)
    add_evaluate_subcommand(commands)
    add_slices_subcommands(commands)
    add_export_subcommands(commands)
    add_run_subcommands(commands)
    add_migrate_subcommand(commands)
    add_embed_subcommand(commands)
    add_autotags_subcommand(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The one place the command reads its configuration; everything below is handed it.
        settings = Settings()
        code: int = args.func(args, settings)
    except ProvisionError as error:
        print(f"autotag: {error.message}\n  how to fix: {error.fix}", file=sys.stderr)
        return 2
    except CatalogueError as error:  # AUTOTAG_MODELS_FILE that does not parse
        print(f"autotag: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # a setting from the environment that does not parse
        for problem in error.errors():
            name = f"AUTOTAG_{'_'.join(str(part) for part in problem['loc']).upper()}"
            print(f"autotag: setting {name}: {problem['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
