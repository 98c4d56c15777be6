"""Peer benchmark: autotag (Elasticsearch) against FiftyOne (MongoDB) on the same items.

    .venv/bin/python -m bench.peers.setup_fiftyone          # once: FiftyOne's own virtualenv
    .venv/bin/python -m bench.peers --items 100000
    .venv/bin/python -m bench.peers --items 1000000

Items come from ``indexer.prediction_generator`` (seed 0). autotag gets them as its writer
stores them (``store.writer.merge_item``) through a raw ``_bulk`` into an index made with the
product's ``store.mapping`` (``index_settings()`` included), on a node of its own (the local
cluster ``peers``, started here and stopped at the end, data kept; or ``ES_URL``). FiftyOne
(1.22.1, in the virtualenv ``setup_fiftyone`` makes) gets the same documents as samples:
through ``Dataset.add_samples`` by default up to 100k items, above that as FiftyOne-shaped
documents inserted with pymongo (``--fiftyone-load``), into a MongoDB 6.0.5 ``mongod`` that
this script runs (``--mongo-cache-gb`` of WiredTiger cache). Both stores are kept between runs
and reused when they hold the right number of items (``--reload`` loads again).

Then, for the product page's five queries:
1. agreement: the ids FiftyOne returns (both query forms, see ``fiftyone_worker``), the ids
   Elasticsearch returns for autotag's translation, and the ids the reference evaluator
   ``search.evaluate`` accepts over the generated documents must be the same sets;
2. timing, caches cleared first (Elasticsearch's ``_cache/clear``, MongoDB's plan cache), the
   two systems' phases alternating within each round: a count (autotag: ``track_total_hits``
   with the request cache off; FiftyOne: ``view.count()``), and a first page of 20, sorted by
   item id, by upload time and by best matched score (autotag's default). autotag's page is
   the whole ``/v1/search`` answer (matched predictions included) from the real app served
   in-process (``ApiPages``), its shard request cache emptied before each page; FiftyOne's is
   ``sort_by(...).limit(20).values("item_id")``, with an index on the sort field where there
   is one. autotag's default order is also compared with FiftyOne's item-id page, its fastest;
3. a table of medians, p95 and FiftyOne/autotag ratios (FiftyOne's better query form).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from elasticsearch import Elasticsearch

from api.app import create_app
from api.models import SortKey
from api.query import answer_hits, default_order, parse_query, search_body
from api.settings import Settings
from bench.peers.setup_fiftyone import default_venv, ensure_venv, mongod_of, python_of
from cli.gc_tuning import tune_gc_for_bulk_work
from indexer.prediction_generator import generate
from search import evaluate, parse
from store.connection import connect, local_cluster
from store.mapping import index_settings, item_mapping
from store.provision import free_port
from store.settings import StoreSettings
from store.writer import merge_item

QUERIES: tuple[str, ...] = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "model_v2"',
    'autotag_status = "pending"',
    'object_prefix:pedestrian AND score >= 0.8 AND training_set = "model_v2"',
)
PAGE = 20
# autotag's measures and the FiftyOne measure each is compared with: the same one, and for
# autotag's default order (best matched score) also FiftyOne's fastest page, by item id.
MEASURES: tuple[tuple[str, str], ...] = (
    ("count", "count"),
    ("page_item_id", "page_item_id"),
    ("page_uploaded_at", "page_uploaded_at"),
    ("page_score", "page_score"),
    ("page_score", "page_item_id"),
)
VARIANTS = ("viewfield", "elemmatch")
WORKER = Path(__file__).with_name("fiftyone_worker.py")
_NOW = "2026-01-01T00:00:00Z"  # the items' write time: fixed, so reruns store the same documents


def stored_documents(items: int) -> Iterator[dict[str, Any]]:
    """The generated items as autotag's writer stores them (derived fields included)."""
    for entry in generate(items):
        yield merge_item(None, entry, training_set="bench", now=_NOW)


# --- autotag's side ---------------------------------------------------------------------------


def es_load(
    client: Elasticsearch,
    index: str,
    items: int,
    batch: int = 1000,
    settings: dict[str, Any] | None = None,
) -> float:
    """A fresh ``index`` (the product's settings, or ``settings``) holding ``items`` items."""
    client.indices.delete(index=index, ignore_unavailable=True)
    settings = {**(index_settings() if settings is None else settings), "refresh_interval": "-1"}
    client.indices.create(index=index, mappings=item_mapping(), settings=settings)
    headers = {"content-type": "application/x-ndjson", "accept": "application/json"}
    started = time.perf_counter()
    lines: list[bytes] = []
    for n, doc in enumerate(stored_documents(items), 1):
        lines.append(orjson.dumps({"create": {"_index": index, "_id": doc["item_id"]}}))
        lines.append(orjson.dumps(doc))
        if n % batch == 0 or n == items:
            body = b"\n".join(lines) + b"\n"
            answer = client.perform_request("POST", "/_bulk", body=body, headers=headers)
            if answer.body["errors"]:
                raise SystemExit("bulk load reported errors")
            lines = []
    client.indices.put_settings(index=index, settings={"refresh_interval": "1s"})
    client.indices.refresh(index=index)
    client.indices.forcemerge(index=index, max_num_segments=1)
    return time.perf_counter() - started


def es_ids(client: Elasticsearch, index: str, query: str) -> set[str]:
    parsed = parse_query(query, 4096)
    ids: set[str] = set()
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "query": parsed.query,
            "size": 10_000,
            "sort": [{"item_id": "asc"}],
            "_source": False,
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body=body)["hits"]["hits"]
        ids.update(hit["_id"] for hit in hits)
        if len(hits) < 10_000:
            return ids
        after = hits[-1]["sort"]


class ApiPages:
    """The real app (``api.app.create_app``, lifespan and all) answering ``/v1/search``
    in-process over ASGI: the whole answer a caller gets, without a network hop."""

    def __init__(self, url: str, index: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = create_app(Settings(es_url=url, index=index))
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://api")

    def page(self, query: str, sort: str) -> bytes:
        """The answer's bytes, as a caller receives them (``ids`` reads them, untimed)."""
        body = {"query": query, "size": PAGE, "sort": sort}
        response = self.loop.run_until_complete(self.client.post("/v1/search", json=body))
        if response.status_code != 200:
            raise SystemExit(f"/v1/search answered {response.status_code}: {response.text}")
        return response.content

    @staticmethod
    def ids(answer: bytes) -> list[str]:
        return [hit["item"]["item_id"] for hit in orjson.loads(answer)["hits"]]

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


def es_once(
    client: Elasticsearch, index: str, query: str, what: str, api: ApiPages | None = None
) -> Any:
    """One count (request cache off) or one first page: through the app when ``api`` is
    given, else the body ``/v1/search`` would send for a plain page, sent straight to ES."""
    parsed = parse_query(query, 4096)
    if api is not None and what != "count":
        return api.page(query, what.removeprefix("page_"))
    if what == "count":
        response = client.search(
            index=index,
            query=parsed.query,
            size=0,
            track_total_hits=True,
            request_cache=False,
        )
        return response["hits"]["total"]["value"]
    key = SortKey(what.removeprefix("page_"))
    body = search_body(parsed, size=PAGE + 1, key=key, order=default_order(key))
    hits = client.search(index=index, body=body)["hits"]["hits"]
    return [hit["item"]["item_id"] for hit in answer_hits(hits[:PAGE])]


# --- FiftyOne's side ---------------------------------------------------------------------------


class FiftyOne:
    """The worker process in FiftyOne's virtualenv, and the ``mongod`` it talks to."""

    def __init__(self, venv: Path, data: Path, port: int, cache_gb: float) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.mongod = subprocess.Popen(
            [
                mongod_of(venv),
                "--dbpath", str(data),
                "--port", str(port),
                "--bind_ip", "127.0.0.1",
                "--wiredTigerCacheSizeGB", str(cache_gb),
                "--logpath", str(data / "mongod.log"),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        env = {
            **os.environ,
            "FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{port}",
            "FIFTYONE_DATABASE_VALIDATION": "false",
            "FIFTYONE_DO_NOT_TRACK": "true",
        }
        self.worker = subprocess.Popen(
            [python_of(venv), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        ready = self._read()
        print(f"FiftyOne {ready['ready']} worker up (mongod pid {self.mongod.pid})")

    @property
    def _stdin(self) -> IO[bytes]:
        assert self.worker.stdin is not None
        return self.worker.stdin

    def _read(self) -> dict[str, Any]:
        assert self.worker.stdout is not None
        line = self.worker.stdout.readline()
        if not line:
            raise SystemExit("the FiftyOne worker stopped")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise SystemExit(f"FiftyOne worker: {answer['error']}")
        return answer

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
        self._stdin.flush()
        return self._read()

    def load(self, name: str, items: int, mode: str) -> dict[str, Any]:
        self._stdin.write(orjson.dumps({"cmd": "load", "name": name, "count": items,
                                        "mode": mode, "batch": 1000}) + b"\n")  # fmt: skip
        for doc in stored_documents(items):
            self._stdin.write(orjson.dumps(doc) + b"\n")
        self._stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.call_quietly("quit")
        self.worker.wait(30)
        self.mongod.terminate()
        self.mongod.wait(60)

    def call_quietly(self, cmd: str) -> None:
        self._stdin.write(orjson.dumps({"cmd": cmd}) + b"\n")
        self._stdin.flush()


# --- the run -------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Samples:
    ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return percentile(self.ms, 0.95)


def check_agreement(
    client: Elasticsearch, index: str, peer: FiftyOne, dataset: str, items: int
) -> None:
    """Every query: FiftyOne's ids (both forms) = Elasticsearch's = the reference evaluator's."""
    asts = [parse(query) for query in QUERIES]
    expected: list[set[str]] = [set() for _ in QUERIES]
    for doc in stored_documents(items):
        for ids, ast in zip(expected, asts, strict=True):
            if evaluate(ast, doc):
                ids.add(doc["item_id"])
    print(f"\n{'query':<74} {'evaluator':>9}  agreement")
    failed = False
    for query, want in zip(QUERIES, expected, strict=True):
        found = {"elasticsearch": es_ids(client, index, query)}
        for variant in VARIANTS:
            found[f"fiftyone {variant}"] = set(
                peer.call("ids", name=dataset, query=query, variant=variant)["ids"]
            )
        wrong = {name: len(ids ^ want) for name, ids in found.items() if ids != want}
        failed = failed or bool(wrong)
        verdict = "all equal" if not wrong else f"DIFFER (symmetric difference) {wrong}"
        print(f"{query:<74} {len(want):>9}  {verdict}")
    if failed:
        raise SystemExit("the systems disagree: no timing")


def time_all(
    client: Elasticsearch,
    index: str,
    peer: FiftyOne,
    dataset: str,
    rounds: int,
    repeats: int,
    api: ApiPages,
) -> dict[tuple[str, str, str], Samples]:
    """(system, measure, query) -> samples; the systems' phases alternate within each round."""
    client.indices.clear_cache(index=index)
    peer.call("clear_caches", name=dataset)
    results: dict[tuple[str, str, str], Samples] = {}
    mine = sorted({ours for ours, _ in MEASURES})
    theirs = sorted({fo for _, fo in MEASURES})
    for query in QUERIES:
        answers: dict[tuple[str, str], Any] = {}
        for _ in range(rounds):
            for measure in mine:
                samples = results.setdefault(("autotag", measure, query), Samples())
                for _ in range(repeats):
                    # The app asks for the shard request cache (a lever for dashboards that
                    # repeat a page); here every page is computed: the cache is emptied first.
                    client.indices.clear_cache(index=index, request=True)
                    started = time.perf_counter()
                    answer = es_once(client, index, query, measure, api)
                    samples.ms.append((time.perf_counter() - started) * 1000)
                    answers["autotag", measure] = (
                        ApiPages.ids(answer) if isinstance(answer, bytes) else answer
                    )
            for measure in theirs:
                for variant in VARIANTS:
                    if measure == "page_score" and variant != "viewfield":
                        continue  # one form is enough: no index serves a computed sort key
                    timed = peer.call(
                        "time", name=dataset, query=query, variant=variant, what=measure,
                        repeats=repeats,
                    )  # fmt: skip
                    key = (f"fiftyone {variant}", measure, query)
                    results.setdefault(key, Samples()).ms.extend(timed["ms"])
                    answers[f"fiftyone {variant}", measure] = timed["result"]
        for (system, measure), answer in answers.items():
            if answer != answers["autotag", measure]:
                raise SystemExit(f"{query}: {system} answered {measure} differently")
    return results


def report(results: dict[tuple[str, str, str], Samples], items: int) -> None:
    print(
        f"\n{items:,} items; ms per request, median / p95; ratio = FiftyOne's better form's "
        "median / autotag's median"
    )
    header = (
        f"{'measure':<18} {'query':<58} {'autotag':>15} {'FO viewfield':>17} "
        f"{'FO elemmatch':>17} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for ours, theirs in MEASURES:
        for query in QUERIES:
            mine = results["autotag", ours, query]
            peers = [results.get((f"fiftyone {v}", theirs, query)) for v in VARIANTS]
            best = min(s.median for s in peers if s is not None)
            label = ours if ours == theirs else f"{ours} vs {theirs.removeprefix('page_')}"
            cells = " ".join(
                f"{'-':>16}" if s is None else f"{s.median:>8.1f} /{s.p95:>7.1f}" for s in peers
            )
            print(
                f"{label:<18} {query[:58]:<58} {mine.median:>7.2f} /{mine.p95:>6.2f} {cells} "
                f"{best / mine.median:>6.1f}x"
            )


def _holds(client: Elasticsearch, index: str, items: int) -> bool:
    """Whether ``index`` holds ``items`` items under the product's current index sort."""
    if not client.indices.exists(index=index):
        return False
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    sort = settings.get("sort", {})
    wanted = index_settings()
    same_sort = (sort.get("field"), sort.get("order")) == (
        wanted.get("sort.field"),
        wanted.get("sort.order"),
    )
    return same_sort and int(client.count(index=index)["count"]) == items


def ensure_product_index(client: Elasticsearch, items: int, reload: bool = False) -> str:
    """``peers-N``: the generated items under the product's index settings, loaded if needed."""
    index = f"peers-{items}"
    if reload or not _holds(client, index, items):
        seconds = es_load(client, index, items)
        print(f"autotag: {items:,} items by raw _bulk + force-merge in {seconds:.1f}s")
    return index


def ensure_es(args: argparse.Namespace) -> tuple[Elasticsearch, Any]:
    settings = StoreSettings()
    if (hosts := settings.es_hosts()) is not None:
        return connect(hosts, request_timeout=600), None
    cluster = local_cluster(StoreSettings(es_port=args.es_port, es_heap=args.es_heap), name="peers")
    cluster.start()
    return connect(cluster.urls, request_timeout=600), cluster


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per query")
    parser.add_argument("--repeats", type=int, default=5, help="requests per phase and round")
    parser.add_argument("--venv", type=Path, default=None, help="FiftyOne's virtualenv")
    parser.add_argument(
        "--fiftyone-load",
        choices=("api", "raw"),
        default=None,
        help="add_samples (api) or pymongo inserts of FiftyOne-shaped documents (raw); "
        "default: api up to 100k items, raw above",
    )
    parser.add_argument("--reload", action="store_true", help="load both stores again")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--es-port", type=int, default=9710, help="the peers node's HTTP port")
    parser.add_argument("--es-heap", default="2g")
    parser.add_argument("--mongo-port", type=int, default=None)
    parser.add_argument("--mongo-cache-gb", type=float, default=2.0)
    parser.add_argument("--keep-node", action="store_true", help="leave the peers node running")
    args = parser.parse_args(argv)

    tune_gc_for_bulk_work()
    venv = ensure_venv(args.venv or default_venv())
    index = f"peers-{args.items}"
    dataset = f"autotag-peers-{args.items}"
    mode = args.fiftyone_load or ("api" if args.items <= 100_000 else "raw")
    client, cluster = ensure_es(args)
    peer = FiftyOne(
        venv, venv.parent / "mongo", args.mongo_port or free_port(), args.mongo_cache_gb
    )
    try:
        print(f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}")
        ensure_product_index(client, args.items, args.reload)
        if args.reload or peer.call("status", name=dataset)["count"] != args.items:
            loaded = peer.load(dataset, args.items, mode)
            print(f"FiftyOne: {loaded['count']:,} samples ({mode}) in {loaded['seconds']:.1f}s")
            indexed = peer.call("indexes", name=dataset)
            print(f"FiftyOne: indexes {indexed['indexes']} in {indexed['seconds']:.1f}s")
        stats = client.indices.stats(index=index, metric=["docs"])["_all"]["primaries"]
        print(f"autotag index {index}: {stats['docs']['count']:,} Lucene documents")
        if not args.skip_agreement:
            check_agreement(client, index, peer, dataset, args.items)
        url = str(client.transport.node_pool.get().base_url)
        api = ApiPages(url, index)
        try:
            results = time_all(client, index, peer, dataset, args.rounds, args.repeats, api)
        finally:
            api.close()
        report(results, args.items)
        print(f"load average at the end {os.getloadavg()}")
    finally:
        peer.close()
        if cluster is not None and not args.keep_node:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
