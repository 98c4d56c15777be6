"""Scale benchmark: bulk-load synthetic predictions and time a fixed query set.

    .venv/bin/python bench/scale.py --items 1000000          # the full run (issue 6)
    .venv/bin/python bench/scale.py --items 20000 --queries  # a quick look
    .venv/bin/python bench/scale.py --items 1000000 --writer-only       # load what queries use
    .venv/bin/python bench/scale.py --skip-load --queries --repeats 100  # then time them

Loads the same generated items twice in one run: through the product's writer
(``PredictionWriter``: mget, merge, bulk with optimistic concurrency) into one index, and as a
raw ``_bulk`` of the same documents serialized beforehand into another (the ceiling). Prints
items/s, Lucene docs/s (nested predictions are documents too) and size on disk for both, then
(with ``--queries``) p50/p99 latency of the query set, cold and warm, against a plain term
filter on an item keyword field (the floor), and then each ``count(...)`` query next to the
existence query it counts (runs alternate between the two, so a busy machine slows both alike),
once as they come and once with the query cache cleared before each search.
Uses ``ES_URL`` or starts a local node.

With ``--pin``, the local Elasticsearch node gets every CPU but the last and this process (the
loader: raw or writer alike) the last one, for the duration of the load. That is the deployed
shape, an indexer on other cores than the search nodes, and it separates "is the writer slow"
from "does the writer's CPU come out of Elasticsearch's share" on a small machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import psutil
from elasticsearch import Elasticsearch

from cli.gc_tuning import tune_gc_for_bulk_work
from indexer.prediction_generator import generate
from store.clock import utc_iso
from store.connection import connect, ensure_elasticsearch
from store.mapping import index_settings, item_mapping
from store.settings import StoreSettings
from store.writer import ItemPredictions, PredictionWriter, merge_item

QUERIES: tuple[str, ...] = (
    "image_prefix:weather_clear",
    "object_prefix:car",
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "model_v2"',
    'autotag_status = "pending"',
    "object_prefix:car* AND score = high",
    "(image_prefix:weather_rain OR image_prefix:weather_snow) AND score >= 0.5",
    "image_prefix:scene_urban AND object_prefix:pedestrian AND score > 0.6",
    "NOT (image_prefix:weather_clear AND score >= 0.5)",
    'object_prefix:car AND status = "rejected"',
    'dataset = "drives_3" AND object_prefix:traffic_sign AND score >= 0.8',
    'uploaded_at >= "2025-01-01" AND image_prefix:time_of_day_night',
    'metadata.city = "Oslo" AND object_prefix:cyclist',
    # Coverage and box geometry (the generator's boxes are 10-120 x 10-80 px on 1920 x 1080).
    'NOT tagged_by = "model_v3"',
    "object_prefix:pedestrian AND box_area < 1024 AND score < 0.5",
    "object_prefix:car AND relative_area > 0.004",
)
# Each count query and the plain existence query over the same predictions; target: the
# count's p50 at most 3x the existence query's.
COUNT_QUERIES: tuple[tuple[str, str], ...] = (
    ("count(object_prefix:car AND score >= 0.8) >= 3", "object_prefix:car AND score >= 0.8"),
    (
        "count(object_prefix:pedestrian OR object_prefix:cyclist) >= 2",
        "object_prefix:pedestrian OR object_prefix:cyclist",
    ),
    (
        'count(image_prefix:weather AND training_set = "model_v2") > 1',
        'image_prefix:weather AND training_set = "model_v2"',
    ),
    ("count(object_prefix:traffic_sign) = 2", "object_prefix:traffic_sign"),
    ("count(object_prefix:pedestrian) = 0", "NOT object_prefix:pedestrian"),
    ("count(object_prefix:car) < 3", "NOT object_prefix:car"),
)
COUNT_TARGET = 3.0
T = TypeVar("T")
FLOOR_QUERY: dict[str, Any] = {"bool": {"filter": [{"term": {"dataset": "drives_3"}}]}}


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def fresh_index(client: Elasticsearch, name: str) -> None:
    client.indices.delete(index=name, ignore_unavailable=True)
    settings = {**index_settings(), "refresh_interval": "30s"}
    client.indices.create(index=name, mappings=item_mapping(), settings=settings)


def index_stats(client: Elasticsearch, name: str) -> tuple[int, int]:
    client.indices.refresh(index=name)
    client.indices.forcemerge(index=name, max_num_segments=1)
    stats = client.indices.stats(index=name, metric=["docs", "store"])["_all"]["primaries"]
    return int(stats["docs"]["count"]), int(stats["store"]["size_in_bytes"])


def load_with_writer(
    client: Elasticsearch, index: str, items: int, batch: int, in_flight: int
) -> float:
    """Wall seconds of ``PredictionWriter.write_many`` over batches generated beforehand."""
    writer = PredictionWriter(client, index, training_set="bench", batch_size=batch)
    spent = 0.0
    for group in batches(batches(generate(items), batch), 20):  # generate 20 batches at a time
        started = time.perf_counter()
        for result in writer.write_many(group, in_flight=in_flight):
            if result.failed:
                raise SystemExit(f"writer failed items: {result.failed[:3]}")
        spent += time.perf_counter() - started
    return spent


def raw_body(chunk: Sequence[ItemPredictions], index: str, now: str) -> bytes:
    lines = []
    for entry in chunk:
        doc = merge_item(None, entry, training_set="bench", now=now)
        lines.append(orjson.dumps({"create": {"_index": index, "_id": entry.item_id}}))
        lines.append(orjson.dumps(doc))
    return b"\n".join(lines) + b"\n"


def load_raw(client: Elasticsearch, index: str, items: int, batch: int, in_flight: int) -> float:
    """Wall seconds sending pre-serialized ``_bulk`` bodies of the same documents."""
    now = utc_iso()
    headers = {"content-type": "application/x-ndjson", "accept": "application/json"}

    def send(body: bytes) -> None:
        response = client.perform_request("POST", "/_bulk", body=body, headers=headers)
        if response.body["errors"]:
            raise SystemExit("raw bulk reported errors")

    spent = 0.0
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        for group in batches(batches(generate(items), batch), 20):
            bodies = [raw_body(chunk, index, now) for chunk in group]
            started = time.perf_counter()
            list(pool.map(send, bodies))
            spent += time.perf_counter() - started
    return spent


def _listening_pids(urls: Sequence[str]) -> list[int]:
    """The local processes listening on the HTTP ports of ``urls`` (the Elasticsearch nodes)."""
    ports = {urlsplit(url).port for url in urls}
    pids = {
        conn.pid
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports
    }
    return sorted(pid for pid in pids if pid is not None)


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (sched_setaffinity is per thread; new ones inherit)."""
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(thread.id, cpus)


@contextlib.contextmanager
def pinned(urls: Sequence[str]) -> Iterator[None]:
    """Elasticsearch on all CPUs but the last, this process on the last; restored after."""
    everything = os.sched_getaffinity(0)
    if len(everything) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    loader = {max(everything)}
    nodes = _listening_pids(urls)
    if not nodes:
        raise SystemExit(f"--pin: no local process listens on {', '.join(urls)}")
    for pid in nodes:
        _set_affinity(pid, everything - loader)
    _set_affinity(os.getpid(), loader)
    print(
        f"pinned: Elasticsearch pid(s) {nodes} on CPUs {sorted(everything - loader)}, "
        f"loader on CPU {sorted(loader)}"
    )
    try:
        yield
    finally:
        for pid in nodes:
            with contextlib.suppress(psutil.NoSuchProcess):
                _set_affinity(pid, everything)
        _set_affinity(os.getpid(), everything)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(client: Elasticsearch, index: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    client.search(index=index, **body)
    return (time.perf_counter() - started) * 1000


def _body(query: dict[str, Any]) -> dict[str, Any]:
    return {"query": query, "size": 20, "track_total_hits": True}


def time_queries(client: Elasticsearch, index: str, repeats: int) -> None:
    from search import parse, translate

    cases: list[tuple[str, dict[str, Any]]] = [("(floor) dataset term filter", FLOOR_QUERY)]
    cases += [(text, translate(parse(text))) for text in QUERIES]
    client.indices.clear_cache(index=index)
    print(f"\n{'query':<72} {'hits':>8} {'cold ms':>8} {'p50 ms':>7} {'p99 ms':>7}")
    floor_p50 = 0.0
    for text, query in cases:
        body = _body(query)
        started = time.perf_counter()
        hits = client.search(index=index, **body)["hits"]["total"]["value"]
        cold = (time.perf_counter() - started) * 1000
        samples = [_timed(client, index, body) for _ in range(repeats)]
        floor_p50 = floor_p50 or statistics.median(samples)
        print(
            f"{text[:72]:<72} {hits:>8} {cold:>8.1f} {statistics.median(samples):>7.1f} "
            f"{percentile(samples, 0.99):>7.1f}"
        )
    time_counts(client, index, repeats, floor_p50, uncached=False)
    time_counts(client, index, repeats, floor_p50, uncached=True)


def time_counts(
    client: Elasticsearch, index: str, repeats: int, floor_p50: float, *, uncached: bool
) -> None:
    """Each count query against its existence query, runs alternating, and the floor.

    Elasticsearch's node query cache keeps the matches of filter clauses it sees often, such
    as the existence query's ``nested`` filter, but never a ``function_score`` with
    ``min_score`` (its matches depend on scores), so a count is computed on every run. With
    ``uncached``, the query cache of the index is cleared before each timed search, so both
    sides are computed; it shows what each costs when the filter cache does not have it (a
    query seen for the first time, new segments).
    """
    from search import parse, translate

    print(
        f"\n{'count query / existence query':<64} {'hits':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'/exist':>7} {'/floor':>7}"
        + ("   (query cache cleared before each search)" if uncached else "")
    )
    worst = 0.0
    for count_text, exists_text in COUNT_QUERIES:
        pair = [_body(translate(parse(text))) for text in (count_text, exists_text)]
        hits = [client.search(index=index, **body)["hits"]["total"]["value"] for body in pair]
        samples: list[list[float]] = [[], []]
        for _ in range(repeats):
            for side, body in enumerate(pair):
                if uncached:
                    client.indices.clear_cache(index=index, query=True)
                samples[side].append(_timed(client, index, body))
        p50 = [statistics.median(side) for side in samples]
        ratio = p50[0] / p50[1]
        worst = max(worst, ratio)
        for side, text in enumerate((count_text, exists_text)):
            extra = f"{ratio:>6.2f}x" if side == 0 else f"{'':>7}"
            print(
                f"{text[:64]:<64} {hits[side]:>8} {p50[side]:>7.1f} "
                f"{percentile(samples[side], 0.99):>7.1f} {extra} {p50[side] / floor_p50:>6.2f}x"
            )
    verdict = "met" if worst <= COUNT_TARGET else "NOT met"
    print(
        f"worst count p50 / existence p50{' (uncached)' if uncached else ''}: {worst:.2f}x"
        f" (target <= {COUNT_TARGET}x: {verdict})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=2, help="bulk requests under way")
    parser.add_argument("--queries", action="store_true", help="also time the query set")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--skip-load", action="store_true", help="query the existing index")
    parser.add_argument(
        "--writer-only",
        action="store_true",
        help="load only the writer's index (the one --queries times), not the raw ceiling",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="during the load, Elasticsearch on all CPUs but the last and the loader on the last",
    )
    args = parser.parse_args(argv)

    tune_gc_for_bulk_work()  # as ``autotag index`` and ``autotag import`` do
    urls = ensure_elasticsearch(StoreSettings())
    client = connect(urls, request_timeout=300)
    writer_index, raw_index = "bench-scale-writer", "bench-scale-raw"
    if not args.skip_load:
        loads: list[tuple[str, float, tuple[int, int]]] = []
        # Each load is followed by its refresh and force-merge, so the next one starts on a
        # node that is no longer merging the previous index in the background.
        if not args.writer_only:
            fresh_index(client, raw_index)
            with pinned(urls) if args.pin else contextlib.nullcontext():
                raw_s = load_raw(client, raw_index, args.items, args.batch, args.in_flight)
            loads.append(("raw", raw_s, index_stats(client, raw_index)))
        fresh_index(client, writer_index)
        with pinned(urls) if args.pin else contextlib.nullcontext():
            writer_s = load_with_writer(
                client, writer_index, args.items, args.batch, args.in_flight
            )
        loads.append(("writer", writer_s, index_stats(client, writer_index)))
        print(
            f"{'loader':<8} {'items':>9} {'seconds':>8} {'items/s':>9} {'docs/s':>9} "
            f"{'lucene docs':>12} {'MiB':>8}"
        )
        for name, seconds, (docs, size) in loads:
            print(
                f"{name:<8} {args.items:>9} {seconds:>8.1f} {args.items / seconds:>9.0f} "
                f"{docs / seconds:>9.0f} {docs:>12} {size / 2**20:>8.1f}"
            )
        if not args.writer_only:
            print(f"writer / raw throughput: {loads[0][1] / loads[1][1]:.2f}x")
    if args.queries:
        time_queries(client, writer_index, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
