"""API overhead benchmark: ``/v1/search`` over a real uvicorn server vs. the same DSL sent to ES.

    ES_URL=http://127.0.0.1:9200 .venv/bin/python -m bench.api
    ES_URL=... .venv/bin/python -m bench.api --items 20000 --concurrency 8 --requests 1500

Loads synthetic items into a fresh index (deleted afterwards, unless ``--index``), starts
``autotag serve``'s ``serve()`` in a subprocess, then runs the same query mix at the same
concurrency against (a) the API and (b) Elasticsearch directly through ``AsyncElasticsearch``
with exactly the body the API builds (``api.query.search_body``: query with inner hits, sort,
page size + 1; for a first page in score order, first the probe and bounded count the API
sends, ``api.query.probed_first_page``; the shard request cache as the API asks for it).
Both sides use aiohttp underneath. Phases alternate (direct, API, direct,
API...) so drift in a shared machine hits both alike; the figures pool all rounds. Prints
p50/p90/p99 latency and throughput, and the API/direct p50 ratio (target: at most 1.15).

``--index NAME`` keeps the items: loaded into NAME if it does not exist, reused otherwise, never
deleted. Product-scale runs (``--items 1000000``) then load once.

``--cached`` adds a third target: a second server whose client memoises each search answer,
so its latency is the API's own cost (HTTP hop and route) without Elasticsearch's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from elasticsearch import AsyncElasticsearch, Elasticsearch
from rich.progress import track

from api.models import SortKey
from api.query import (
    DEFAULT_TRACK_TOTAL_HITS,
    default_order,
    parse_query,
    probed_first_page,
    search_body,
)
from store.connection import node_urls, serializers
from store.documents import prepare_item
from store.mapping import index_settings, item_mapping
from store.settings import StoreSettings

QUERIES: tuple[str, ...] = (
    "image_prefix:weather_clear",
    "object_prefix:car",
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "model_v2"',
    'autotag_status = "pending" AND object_prefix:pedestrian',
    "(image_prefix:weather_rain OR image_prefix:weather_snow) AND score >= 0.5",
    "image_prefix:scene AND NOT object_prefix:truck",
)
IMAGE_LABELS = (
    "weather_clear", "weather_rain", "weather_snow", "scene_highway", "scene_city",
    "time_of_day_night", "time_of_day_day",
)  # fmt: skip
OBJECT_LABELS = (
    "car", "car_suv", "cargo_ship", "pedestrian", "truck", "traffic_sign_stop",
    "traffic_light", "bicycle",
)  # fmt: skip
BOX = {"x1": 10.0, "y1": 10.0, "x2": 50.0, "y2": 80.0}


def _prediction(rng: random.Random, pid: str, label: str, *, box: bool) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "id": pid,
        "label": label,
        "score": round(rng.uniform(-1, 1), 3),
        "training_set": rng.choice(("model_v1", "model_v2")),
        "model": "bench",
        "status": rng.choice(("pending", "pending", "pending", "accepted", "rejected")),
    }
    if box:
        prediction["bbox"] = BOX
    return prediction


def items(n: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(n):
        images = rng.sample(IMAGE_LABELS, rng.randint(1, 3))
        objects = [rng.choice(OBJECT_LABELS) for _ in range(rng.randint(0, 6))]
        yield {
            "item_id": f"bench-{i:07d}",
            "dataset": f"d{i % 5}",
            "uploaded_at": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00Z",
            "image_predictions": [
                _prediction(rng, f"b{i}-{j}", label, box=False) for j, label in enumerate(images)
            ],
            "object_predictions": [
                _prediction(rng, f"b{i}-o{j}", label, box=True) for j, label in enumerate(objects)
            ],
        }


def load(es: Elasticsearch, index: str, n: int) -> None:
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    docs = items(n, random.Random(42))
    for _ in track(range(0, n, 2000), description=f"loading {n:,} items"):
        ops: list[dict[str, Any]] = []
        for doc in itertools.islice(docs, 2000):
            ops += [{"index": {"_index": index, "_id": doc["item_id"]}}, prepare_item(doc)]
        assert not es.bulk(operations=ops)["errors"]
    es.indices.refresh(index=index)
    es.indices.forcemerge(index=index, max_num_segments=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# With ``--cached``: a second server whose client answers each distinct search body from
# memory after its first time, to time the API's own cost (HTTP hop + route) without ES.
_MEMOISE_SEARCH = """
from elasticsearch import AsyncElasticsearch
_search, _answers = AsyncElasticsearch.search, {}
async def _memoised(self, *args, **kwargs):
    key = repr(kwargs.get("body"))
    if key not in _answers:
        _answers[key] = await _search(self, *args, **kwargs)
    return _answers[key]
AsyncElasticsearch.search = _memoised
"""


def start_server(
    es_url: str, index: str, port: int, *, cached: bool = False
) -> subprocess.Popen[bytes]:
    code = (_MEMOISE_SEARCH if cached else "") + (
        "from cli.serve import serve; from api.settings import Settings; "
        f"serve(Settings(es_url={es_url!r}, index={index!r}), port={port}, log_level='warning')"
    )
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "-c", code], cwd=root)


async def wait_live(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with session.get(f"{base}/v1/health/live") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        await asyncio.sleep(0.1)


async def drive(
    call: Callable[[int], Awaitable[None]], requests: int, concurrency: int
) -> tuple[list[float], float]:
    """Send ``requests`` calls from ``concurrency`` workers; latencies (ms) and wall seconds."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - start) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    args: argparse.Namespace,
    es_url: str,
    index: str,
    base: str,
    server_pid: int,
    cached_base: str | None = None,
) -> None:
    size = args.size
    key, order, tth = SortKey.SCORE, default_order(SortKey.SCORE), DEFAULT_TRACK_TOTAL_HITS
    parsed = [parse_query(q, 4096) for q in QUERIES]
    bodies = [search_body(p, size=size + 1, key=key, order=order) for p in parsed]
    # Configured as the API's own client (orjson for every JSON mimetype).
    es = AsyncElasticsearch(
        es_url, serializers=serializers(), connections_per_node=args.concurrency * 2
    )
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_live(session, base)

        async def direct(i: int) -> None:
            # What the API sends for a first page in score order: the probe and a bounded
            # count, or the plain body when the probe falls short (api.query).
            n = i % len(bodies)
            response: Any = await probed_first_page(
                es, index, parsed[n], size=size + 1, order=order, track_total_hits=tth
            )
            if response is None:
                response = await es.search(index=index, body=bodies[n], request_cache=True)
            assert response["hits"]["hits"] is not None

        def api_at(url: str) -> Callable[[int], Awaitable[None]]:
            async def api(i: int) -> None:
                payload = {"query": QUERIES[i % len(QUERIES)], "size": size}
                async with session.post(f"{url}/v1/search", json=payload) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

            return api

        targets = [("direct", direct), ("api", api_at(base))]
        if cached_base is not None:
            await wait_live(session, cached_base)
            targets.append(("api, ES cached", api_at(cached_base)))
        for _, call in targets:  # warm-up: caches, JIT, connection pools
            await drive(call, args.requests // 4, args.concurrency)
        results: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name, _ in targets}
        server = psutil.Process(server_pid)
        server_cpu = 0.0
        for _ in range(args.rounds):
            for name, call in targets:
                before = sum(server.cpu_times()[:2])
                lat, wall = await drive(call, args.requests // args.rounds, args.concurrency)
                if name == "api":
                    server_cpu += sum(server.cpu_times()[:2]) - before
                results[name] = (results[name][0] + lat, results[name][1] + wall)
    await es.close()

    print(
        f"\n/v1/search vs direct ES: {len(QUERIES)} queries, page size {size}, "
        f"concurrency {args.concurrency}, {args.items} items, {args.rounds} alternating rounds"
    )
    header = (
        f"{'target':<15} {'requests':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    )
    print(header)
    print("-" * len(header))
    p50 = {}
    for name, (lat, wall) in results.items():
        p50[name] = statistics.median(lat)
        print(
            f"{name:<15} {len(lat):>8} {p50[name]:>8.2f} {pct(lat, 0.9):>8.2f} "
            f"{pct(lat, 0.99):>8.2f} {len(lat) / wall:>8.0f}"
        )
    per_request = server_cpu * 1000 / len(results["api"][0])
    print(f"\nAPI server CPU per request: {per_request:.2f} ms (user + system)")
    # The API's cost is a fixed amount per request; the ratio also depends on how long
    # Elasticsearch takes, i.e. on the index size and the queries.
    print(f"API p50 - direct p50 = {p50['api'] - p50['direct']:.2f} ms per request")
    ratio = p50["api"] / p50["direct"]
    verdict = "within" if ratio <= 1.15 else "OVER"
    print(f"API p50 / direct p50 = {ratio:.3f}  ({verdict} the 1.15 target)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2000, help="per target, all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=20, help="page size")
    parser.add_argument(
        "--index",
        help="keep the items in this index: loaded if it does not exist, reused (and not "
        "deleted) if it does, so runs on a large index need to load it once",
    )
    parser.add_argument(
        "--cached",
        action="store_true",
        help="also time a server whose search answers are memoised (the API's own cost)",
    )
    args = parser.parse_args(argv)

    es_url = ",".join(node_urls(StoreSettings()))
    es = Elasticsearch(
        es_url.split(","), request_timeout=300
    )  # merges may stall a large load's bulks
    index = args.index or f"bench-api-{uuid.uuid4().hex[:8]}"
    port = free_port()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        if args.index is None or not es.indices.exists(index=index):
            load(es, index, args.items)
        args.items = es.count(index=index)["count"]
        servers.append(start_server(es_url, index, port))
        cached_base = None
        if args.cached:
            cached_port = free_port()
            servers.append(start_server(es_url, index, cached_port, cached=True))
            cached_base = f"http://127.0.0.1:{cached_port}"
        base = f"http://127.0.0.1:{port}"
        asyncio.run(run(args, es_url, index, base, servers[0].pid, cached_base))
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        if args.index is None:
            es.indices.delete(index=index, ignore_unavailable=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
