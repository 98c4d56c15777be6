"""Where autotag's first page of 20 spends its time, on the peer benchmark's index.

    .venv/bin/python -m bench.peers.breakdown --items 1000000

Runs on the peer benchmark's node (the local cluster ``peers``, or ``ES_URL``) and its product
index ``peers-N`` (loaded by ``bench.peers`` when missing). For the five product-page queries
and the three page orders, alternating within each round, with the shard request cache
emptied before every request:

- ``floor``: an empty search (``size: 0``, nothing counted): what any request costs;
- ``ids``: the cheapest page of 20 ids Elasticsearch can give (the API's query and sort,
  ``_source`` off, no inner hits, ``track_total_hits`` 21), Elasticsearch's ``took`` and the
  wall time of the HTTP request;
- ``page``: the body the API sends (``api.query.search_body``; in score order first the probe
  of ``api.query.probe_body``, and the plain body after it where the probe falls short, as the
  API does; the API's bounded count, sent alongside the probe, is left out), its ``took``, its
  wall time over HTTP, the milliseconds to decode its JSON and its size;
- ``unfiltered``: the plain page with its whole ``_source`` (no ``excludes``, which make
  Elasticsearch parse and rewrite each item's source): what the filtering costs;
- ``api``: the whole ``/v1/search`` answer from the real app in-process (``ApiPages``).

Medians per cell; ``took`` is the node's own time for the search, the rest of a request's wall
time is the client, HTTP and JSON on both ends.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from api.models import SortKey
from api.query import default_order, parse_query, probe_body, search_body
from api.settings import SCORE_PROBE_THRESHOLD
from bench.peers.__main__ import PAGE, QUERIES, ApiPages, ensure_es, ensure_product_index
from bench.peers.levers import _without_inner_hits

Body = dict[str, Any]
MEASURES = (
    "floor wall",
    "floor took",
    "ids wall",
    "ids took",
    "page wall",
    "page took",
    "page decode",
    "unfiltered took",
    "api wall",
)


def _bodies(query: str, key: SortKey) -> tuple[list[Body], Body]:
    """The API's requests for this page in the order it sends them (in score order the probe,
    then the plain page if the probe falls short), and the cheapest request for its 20 ids."""
    parsed = parse_query(query, 4096)
    order = default_order(key)
    page = search_body(parsed, size=PAGE + 1, key=key, order=order)
    ids = {
        **page,
        "query": _without_inner_hits(page["query"]),
        "_source": False,
        "track_total_hits": PAGE + 1,
    }
    if key is SortKey.SCORE:
        probe = probe_body(parsed, size=PAGE + 1, order=order, threshold=SCORE_PROBE_THRESHOLD)
        if probe is not None:
            return [probe, page], ids
    return [page], ids


def _request(http: httpx.Client, index: str, body: Body) -> tuple[float, float, float, int, int]:
    """(wall ms, took ms, decode ms, bytes, hits) of one search, request cache emptied."""
    http.post(f"/{index}/_cache/clear", params={"request": "true"}).raise_for_status()
    started = time.perf_counter()
    response = http.post(f"/{index}/_search", content=orjson.dumps(body))
    wall = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    started = time.perf_counter()
    answer = orjson.loads(response.content)
    decode = (time.perf_counter() - started) * 1000
    hits = len(answer["hits"]["hits"])
    return wall, float(answer["took"]), decode, len(response.content), hits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--es-port", type=int, default=9710)
    parser.add_argument("--es-heap", default="2g")
    parser.add_argument("--keep-node", action="store_true")
    args = parser.parse_args(argv)
    client, cluster = ensure_es(args)
    try:
        index = ensure_product_index(client, args.items)
        url = str(client.transport.node_pool.get().base_url)
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            api = ApiPages(url, index)
            try:
                run(http, api, index, args.rounds, args.repeats, args.items)
            finally:
                api.close()
    finally:
        if cluster is not None and not args.keep_node:
            cluster.stop()
    return 0


def run(
    http: httpx.Client, api: ApiPages, index: str, rounds: int, repeats: int, items: int
) -> None:
    samples: dict[tuple[str, str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    floor = {"size": 0, "track_total_hits": False}
    for _ in range(rounds):
        for key in SortKey:
            for query in QUERIES:
                pages, ids = _bodies(query, key)

                def add(measure: str, value: float, key: SortKey = key, query: str = query) -> None:
                    samples.setdefault((key.value, query, measure), []).append(value)

                for _ in range(repeats):
                    wall, took, _, _, _ = _request(http, index, floor)
                    add("floor wall", wall)
                    add("floor took", took)
                    wall, took, _, _, _ = _request(http, index, ids)
                    add("ids wall", wall)
                    add("ids took", took)
                    totals = [0.0, 0.0, 0.0]
                    for body in pages:  # the probe's fallback only where it fell short
                        wall, took, decode, size, found = _request(http, index, body)
                        totals = [totals[0] + wall, totals[1] + took, totals[2] + decode]
                        if found == PAGE + 1:
                            break
                    add("page wall", totals[0])
                    add("page took", totals[1])
                    add("page decode", totals[2])
                    add("unfiltered took", _request(http, index, {**pages[-1], "_source": True})[1])
                    http.post(f"/{index}/_cache/clear", params={"request": "true"})
                    started = time.perf_counter()
                    answer = api.page(query, key.value)
                    add("api wall", (time.perf_counter() - started) * 1000)
                    sizes[key.value, query] = size
                    sizes[key.value, f"api {query}"] = len(answer)
    print(f"\n{items:,} items, first page of {PAGE}: median ms per cell, sizes in KB")
    header = f"{'order':<12} {'query':<44} " + " ".join(f"{m:>11}" for m in MEASURES)
    print(header + f" {'ES KB':>7} {'API KB':>7}")
    print("-" * (len(header) + 16))
    for key in SortKey:
        for query in QUERIES:
            cells = " ".join(
                f"{statistics.median(samples[key.value, query, m]):>11.2f}" for m in MEASURES
            )
            es_kb = sizes[key.value, query] / 1024
            api_kb = sizes[key.value, f"api {query}"] / 1024
            print(f"{key.value:<12} {query[:44]:<44} {cells} {es_kb:>7.1f} {api_kb:>7.1f}")


if __name__ == "__main__":
    sys.exit(main())
