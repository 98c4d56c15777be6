"""Evaluation benchmark: how long ``/v1/evaluate``'s work takes on a large slice, and how much
memory it holds, for imported truth (streamed) and for reviews (aggregations).

    .venv/bin/python -m bench.evaluate load --index bench-eval-100k --items 100000
    .venv/bin/python -m bench.evaluate run --index bench-eval-100k --truth gt
    .venv/bin/python -m bench.evaluate run --index bench-eval-100k --truth reviews -t v1
    .venv/bin/python -m bench.evaluate delete --index bench-eval-100k

``load`` writes generated items (two training sets ``v1``/``v2`` of a detector, each item
tagged by both, ground truth from source ``gt`` with ~3 boxes and one tag, a fifth of the
predictions reviewed) with raw ``_bulk`` requests. ``run`` evaluates the whole index in this
process and prints the wall time, items/s and the process's peak RSS (``ru_maxrss``): run
each measurement as its own process to compare sizes. Uses ``AUTOTAG_ES_URL`` / ``ES_URL``.
Loads over 100k items take minutes: run them when nothing else loads the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import orjson
from elasticsearch import AsyncElasticsearch, Elasticsearch

from bench.scale import batches
from evaluation.report import EvaluationOptions
from evaluation.run import Workers, evaluate
from harness.evaluation_items import SETS, item
from store.connection import connect, serializers
from store.mapping import index_settings, item_mapping
from store.settings import StoreSettings

CHUNK = 2000


def _chunks(index: str, items: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    lines: list[bytes] = []
    for n in range(items):
        doc = item(rng, n)
        lines.append(orjson.dumps({"index": {"_index": index, "_id": doc["item_id"]}}))
        lines.append(orjson.dumps(doc))
        if len(lines) >= 2 * CHUNK:
            yield b"\n".join(lines) + b"\n"
            lines = []
    if lines:
        yield b"\n".join(lines) + b"\n"


def load(es: Elasticsearch, index: str, items: int, seed: int) -> None:
    started = time.perf_counter()
    if not es.indices.exists(index=index):
        settings = {**index_settings(), "refresh_interval": "-1"}
        es.indices.create(index=index, mappings=item_mapping(), settings=settings)
    done = 0
    with ThreadPoolExecutor(max_workers=2) as pool:

        def send(body: bytes) -> int:
            response = es.perform_request(
                "POST",
                "/_bulk",
                headers={"content-type": "application/x-ndjson", "accept": "application/json"},
                body=body,
                params={"filter_path": "errors,items.*.error"},
            )
            if response.get("errors"):
                raise RuntimeError(str(response)[:500])
            return body.count(b"\n") // 2

        # A few bodies in flight at a time (``pool.map`` over the whole generator would build
        # every body first: gigabytes at 1M items, and a rate that counted nothing sent).
        for group in batches(_chunks(index, items, seed), 4):
            for count in pool.map(send, group):
                done += count
                if done % 50_000 < CHUNK:
                    rate = done / (time.perf_counter() - started)
                    print(f"  loaded {done} items ({rate:.0f}/s)", flush=True)
    es.indices.put_settings(index=index, settings={"refresh_interval": "1s"})
    es.indices.refresh(index=index)
    es.options(request_timeout=3600).indices.forcemerge(index=index, max_num_segments=1)
    seconds = time.perf_counter() - started
    print(f"loaded {items} items into {index} in {seconds:.0f}s")


def client(url: str) -> AsyncElasticsearch:
    """The benchmark's client (module level, so worker processes can make their own)."""
    return AsyncElasticsearch(url, request_timeout=120, serializers=serializers())


async def run(
    url: str, index: str, truth: str, sets: list[str], budget: int | None, workers: int
) -> None:
    client_now = client(url)
    options = EvaluationOptions(training_sets=sets, truth=truth, bootstrap=1000)
    # cold: the review aggregation (every run makes it) must not come from the request cache
    await client_now.indices.clear_cache(index=index, request=True, query=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    try:
        report = await evaluate(
            client_now,
            index,
            {"match_all": {}},
            "everything",
            options,
            budget=budget,
            workers=Workers(workers, partial(client, url)) if workers > 1 else None,
        )
    finally:
        await client_now.close()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    items = report.items
    exact = all(m.exact for ts in report.training_sets for m in ts.labels)
    print(
        f"truth={truth} sets={','.join(sets)} items={items} seconds={seconds:.2f}"
        f" items_per_s={items / seconds:.0f} peak_rss_mib={peak:.0f}"
        f" (before evaluating {rss_before:.0f}) workers={workers}"
        f" worker_peak_rss_mib={worker_peak:.0f} exact={exact}"
    )
    for ts in report.training_sets:
        print(f"  {ts.training_set}: mean AP {ts.mean_ap} labels {len(ts.labels)}")
    for pair in report.comparisons:
        print(f"  {pair.verdict[:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__)
    parser.add_argument("action", choices=("load", "run", "delete"))
    parser.add_argument("--index", required=True)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--truth", default="gt")
    parser.add_argument("-t", "--training-set", action="append", dest="sets")
    parser.add_argument("--budget", type=int, default=None, help="exact detections per curve")
    parser.add_argument(
        "--workers", type=int, default=1, help="judging processes (slices of the point in time)"
    )
    args = parser.parse_args(argv)
    settings = StoreSettings()
    hosts = settings.es_hosts()
    if hosts is None:
        print("set AUTOTAG_ES_URL or ES_URL", file=sys.stderr)
        return 2
    es = connect(hosts, settings=settings, request_timeout=600)
    if args.action == "load":
        load(es, args.index, args.items, args.seed)
    elif args.action == "delete":
        es.indices.delete(index=args.index, ignore_unavailable=True)
    else:
        sets = args.sets or list(SETS)
        asyncio.run(run(hosts[0], args.index, args.truth, sets, args.budget, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
