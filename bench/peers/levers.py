"""Which request and index settings make autotag's first page fast (issue 18's levers).

    .venv/bin/python -m bench.peers.levers --items 100000

Runs on the peer benchmark's node (the local cluster ``peers``, or ``ES_URL``), on indexes of
the peer benchmark's items without an index sort and with each candidate one
(``peers-levers-N-sort-<key>``, loaded here when missing; this node has no ``_reindex``).
For the five product-page queries and the three page orders, times the body ``/v1/search``
sends (``api.query.search_body``) and variants of it, alternating within each round:

- ``tth=N`` / ``tth=false``: ``track_total_hits`` bounded at N, or off;
- ``no inner hits`` and ``no _source``: what those parts of the answer cost at most;
- ``request cache``: the shard request cache, for a dashboard repeating one page.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from elasticsearch import Elasticsearch

from api.models import SortKey
from api.query import Parsed, default_order, parse_query, probe_body, search_body
from bench.peers.__main__ import (
    PAGE,
    QUERIES,
    ensure_es,
    ensure_product_index,
    es_load,
    percentile,
)
from store.mapping import index_settings

Body = dict[str, Any]
SORTS: dict[str, Body] = {
    "item_id": {"sort.field": ["item_id"], "sort.order": ["asc"]},
    "uploaded_at": {"sort.field": ["uploaded_at", "item_id"], "sort.order": ["desc", "asc"]},
}


def _without_inner_hits(query: Any) -> Any:
    if isinstance(query, dict):
        return {k: _without_inner_hits(v) for k, v in query.items() if k != "inner_hits"}
    if isinstance(query, list):
        return [_without_inner_hits(v) for v in query]
    return query


def _set(**extra: Any) -> Callable[[Body], Body]:
    return lambda body: {**body, **extra}


VARIANTS: dict[str, Callable[[Body], Body]] = {
    "api": lambda body: body,
    "tth=1000": _set(track_total_hits=1000),
    "tth=21": _set(track_total_hits=PAGE + 1),
    "tth=false": _set(track_total_hits=False),
    "tth=21, no inner hits": lambda body: {
        **body,
        "query": _without_inner_hits(body["query"]),
        "track_total_hits": PAGE + 1,
    },
    "tth=21, no _source": _set(track_total_hits=PAGE + 1, _source=False),
}


PROBES = (0.9, 0.95, 0.99)


def _time_probe(
    client: Elasticsearch,
    index: str,
    parsed: Parsed,
    base: Body,
    threshold: float,
    reference: list[str] | None,
    times: list[float],
    repeats: int,
) -> None:
    """A score-order first page by ``api.query.probe_body`` plus a bounded count, in one
    ``_msearch``; the plain page again when the probe finds too few items."""
    probe = probe_body(parsed, size=PAGE + 1, order="desc", threshold=threshold)
    assert probe is not None
    count = {"query": parsed.query, "size": 0, "track_total_hits": PAGE + 1}
    fallbacks = 0
    for _ in range(repeats):
        started = time.perf_counter()
        answers = client.msearch(searches=[{"index": index}, probe, {"index": index}, count])
        hits = answers["responses"][0]["hits"]["hits"]
        if len(hits) < PAGE + 1:
            fallbacks += 1
            hits = client.search(index=index, body=base)["hits"]["hits"]
        times.append((time.perf_counter() - started) * 1000)
        if [hit["_id"] for hit in hits] != reference:
            raise SystemExit(f"probe {threshold}: a different page")
    if fallbacks:
        times.append(-1.0)  # marks: this query needed the fallback


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--es-port", type=int, default=9710)
    parser.add_argument("--es-heap", default="2g")
    parser.add_argument("--keep-node", action="store_true")
    parser.add_argument("--sorts", default="none,item_id,uploaded_at")
    args = parser.parse_args(argv)
    client, cluster = ensure_es(args)
    try:
        run(client, args)
    finally:
        if cluster is not None and not args.keep_node:
            cluster.stop()
    return 0


def _index_for(client: Elasticsearch, items: int, sort: str) -> str:
    wanted = SORTS.get(sort, {})
    product = {k: v for k, v in index_settings().items() if k.startswith("sort.")}
    if wanted == product:
        return ensure_product_index(client, items)  # the peer benchmark's own index
    index = f"peers-levers-{items}-sort-{sort}"
    exists = client.indices.exists(index=index)
    if not exists or client.count(index=index)["count"] != items:
        settings = index_settings()
        settings = {k: v for k, v in settings.items() if not k.startswith("sort.")}
        if sort != "none":
            settings |= SORTS[sort]
        seconds = es_load(client, index, items, settings=settings)
        print(f"loaded {index} in {seconds:.1f}s")
    return index


def run(client: Elasticsearch, args: argparse.Namespace) -> None:
    indexes = {sort: _index_for(client, args.items, sort) for sort in args.sorts.split(",")}
    for index in indexes.values():
        client.indices.clear_cache(index=index)
    samples: dict[tuple[str, str, str, str], list[float]] = {}
    cached: dict[tuple[str, str, str], list[float]] = {}
    probes: dict[tuple[str, str, float], list[float]] = {}
    for query in QUERIES:
        parsed = parse_query(query, 4096)
        for key in SortKey:
            base = search_body(parsed, size=PAGE + 1, key=key, order=default_order(key))
            reference = None
            for _ in range(args.rounds):
                for sort, index in indexes.items():
                    for name, variant in VARIANTS.items():
                        body = variant(copy.deepcopy(base))
                        times = samples.setdefault((query, key.value, sort, name), [])
                        for _ in range(args.repeats):
                            started = time.perf_counter()
                            hits = client.search(index=index, body=body)["hits"]["hits"]
                            times.append((time.perf_counter() - started) * 1000)
                        ids = [hit["_id"] for hit in hits]
                        reference = reference or ids
                        if ids != reference:
                            raise SystemExit(f"{query} {key} {sort} {name}: different page")
                    if key is SortKey.SCORE:
                        for threshold in PROBES:
                            _time_probe(
                                client,
                                index,
                                parsed,
                                base,
                                threshold,
                                reference,
                                probes.setdefault((query, sort, threshold), []),
                                args.repeats,
                            )
                    times = cached.setdefault((query, key.value, sort), [])
                    body = VARIANTS["tth=21"](copy.deepcopy(base))
                    for _ in range(args.repeats):
                        started = time.perf_counter()
                        client.search(index=index, body=body, request_cache=True)
                        times.append((time.perf_counter() - started) * 1000)
    print(f"\n{args.items:,} items, page of {PAGE}: median ms (p95) per index sort and variant")
    names = [*VARIANTS, "tth=21, request cache"]
    for key in SortKey:
        print(f"\nsort {key.value} ({default_order(key)})")
        print(f"{'index sort':<12} " + " ".join(f"{n[:22]:>22}" for n in names))
        for sort in indexes:
            cells = []
            for name in VARIANTS:
                pooled = [t for q in QUERIES for t in samples[q, key.value, sort, name]]
                med = statistics.median(
                    statistics.median(samples[q, key.value, sort, name]) for q in QUERIES
                )
                cells.append(f"{med:>13.2f} ({percentile(pooled, 0.95):>6.1f})")
            pooled = [t for q in QUERIES for t in cached[q, key.value, sort]]
            med = statistics.median(statistics.median(cached[q, key.value, sort]) for q in QUERIES)
            cells.append(f"{med:>13.2f} ({percentile(pooled, 0.95):>6.1f})")
            print(f"{sort:<12} " + " ".join(cells))
    print("\nscore order, probe + bounded count (one _msearch), median ms; * = fell back")
    for sort in indexes:
        for query in QUERIES:
            cells = []
            for threshold in PROBES:
                times = probes[query, sort, threshold]
                mark = "*" if -1.0 in times else " "
                cells.append(
                    f"t={threshold}: {statistics.median(t for t in times if t >= 0):7.2f}{mark}"
                )
            print(f"{sort:<12} {query[:60]:<60} " + "  ".join(cells))
    print("\nper query, api body vs tth=21, each index sort (median ms):")
    for key in SortKey:
        for query in QUERIES:
            row = [
                f"{statistics.median(samples[query, key.value, sort, 'api']):6.2f}/"
                f"{statistics.median(samples[query, key.value, sort, 'tth=21']):6.2f}"
                for sort in indexes
            ]
            print(f"{key.value:<12} {query[:60]:<60} " + "  ".join(row))


if __name__ == "__main__":
    sys.exit(main())
