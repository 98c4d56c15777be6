"""Parse + translate throughput of the autotag query language versus luqum.

For each size (1, 5 and 30 clauses) an autotag query and an equivalent Lucene query (nested
fields configured, so luqum emits the same kind of ``nested`` clauses) are turned into
Elasticsearch DSL again and again; the table shows queries per second and the ratio.

    .venv/bin/python bench/translate.py [--seconds 3] [--show] [--clock cpu]

``--clock cpu`` counts this process's CPU time instead of wall time: on a machine shared with
other work the rates then hardly depend on what else runs.

With ``--es URL`` it also measures, on a real node, the label lookup the translator emits (a
``term`` on the precomputed ``label_prefixes``) against what it would need without them
(``label = L`` or ``label`` starting with ``L_``: a ``term`` plus a ``prefix`` scan).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from luqum.elasticsearch import ElasticsearchQueryBuilder
from luqum.parser import parser as luqum_parser

import search

# (autotag, lucene) for one "unit" of n clauses; units are ANDed / ORed into bigger queries.
UNITS: list[tuple[int, str, str]] = [
    (
        2,
        "(object_prefix:car_{i} AND score >= 0.5)",
        "object_predictions:(label_prefixes:car_{i} AND score:[0.5 TO *])",
    ),
    (1, 'dataset = "ds_{i}"', "dataset:ds_{i}"),
    (1, "NOT image_prefix:night_{i}", "NOT image_predictions.label_prefixes:night_{i}"),
    (1, "uploaded_at >= 2024-01-{d:02d}", "uploaded_at:[2024-01-{d:02d} TO *]"),
]


def build(clauses: int) -> tuple[str, str]:
    """Equivalent queries with ``clauses`` leaf conditions, groups of 5 ORed together."""
    if clauses == 1:
        return "object_prefix:car", "object_predictions.label_prefixes:car"
    groups: list[tuple[str, str]] = []
    for g in range(clauses // 5):
        ours = [unit[1].format(i=g, d=g % 28 + 1) for unit in UNITS]
        theirs = [unit[2].format(i=g, d=g % 28 + 1) for unit in UNITS]
        groups.append((" AND ".join(ours), " AND ".join(theirs)))
    if len(groups) == 1:
        return groups[0]
    return (
        " OR ".join(f"({ours})" for ours, _ in groups),
        " OR ".join(f"({theirs})" for _, theirs in groups),
    )


def luqum_builder() -> ElasticsearchQueryBuilder:
    prediction: dict[str, Any] = {"label_prefixes": {}, "label": {}, "score": {}, "status": {}}
    return ElasticsearchQueryBuilder(
        default_operator=ElasticsearchQueryBuilder.MUST,
        nested_fields={"object_predictions": prediction, "image_predictions": prediction},
        not_analyzed_fields=[
            "dataset",
            "uploaded_at",
            "object_predictions.label_prefixes",
            "image_predictions.label_prefixes",
            "object_predictions.score",
        ],
    )


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _rate(work: Callable[[], Any], seconds: float, clock: Callable[[], float]) -> float:
    """Calls per second of ``clock`` (wall time, or this process's CPU time) for about
    ``seconds`` of wall time."""
    calls, start, started = 0, time.perf_counter(), clock()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            work()
        calls += 20
    return calls / (clock() - started)


def compare(
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """Best calls/second of each over five interleaved rounds (so load changes hit both)."""
    ours(), theirs()  # warm caches (our Lark parser is built once per process)
    best_ours = best_theirs = 0.0
    for _ in range(5):
        best_ours = max(best_ours, _rate(ours, seconds / 5, clock))
        best_theirs = max(best_theirs, _rate(theirs, seconds / 5, clock))
    return best_ours, best_theirs


LABELS = [
    f"{head}_{tail}"
    for head in ("car", "cargo", "carriage", "truck", "traffic", "trailer", "cat", "person")
    for tail in ("small", "large", "suv", "ship", "light", "sign_stop", "sign_yield", "x")
]


def _prefixes(label: str) -> list[str]:
    parts = label.split("_")
    return ["_".join(parts[: n + 1]) for n in range(len(parts))]


def label_lookup(url: str, items: int, rounds: int) -> None:
    """Median ms per search: term on ``label_prefixes`` vs term + prefix on ``label``."""
    from elasticsearch import Elasticsearch

    from store.documents import prepare_item
    from store.mapping import index_settings, item_mapping

    es = Elasticsearch(url, request_timeout=120)
    index = f"bench-labels-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    rng = random.Random(7)
    try:
        for start in range(0, items, 2000):
            operations: list[dict[str, Any]] = []
            for n in range(start, min(start + 2000, items)):
                predictions = [
                    {"label": rng.choice(LABELS), "score": rng.random()} for _ in range(8)
                ]
                item = prepare_item({"item_id": str(n), "object_predictions": predictions})
                operations += [{"index": {"_index": index, "_id": str(n)}}, item]
            es.bulk(operations=operations)
        es.indices.refresh(index=index)
        es.indices.forcemerge(index=index, max_num_segments=1)
        path = "object_predictions"
        shapes: dict[str, Callable[[str], dict[str, Any]]] = {
            "term on label_prefixes": lambda label: {"term": {f"{path}.label_prefixes": label}},
            "term + prefix on label": lambda label: {
                "bool": {
                    "should": [
                        {"term": {f"{path}.label": label}},
                        {"prefix": {f"{path}.label": label + "_"}},
                    ],
                    "minimum_should_match": 1,
                }
            },
        }
        labels = sorted({cut for label in LABELS for cut in _prefixes(label)})
        print(f"\nlabel lookup on {items:,} items x 8 object predictions,")
        print(f"{len(labels)} labels x {rounds} rounds, request cache off, wall ms per search")
        print(f"{'query':<26}{'median ms':>10}{'mean ms':>9}")
        timings: dict[str, list[float]] = {name: [] for name in shapes}
        for _ in range(rounds):
            for label in labels:
                for name, shape in shapes.items():
                    body = {"nested": {"path": path, "query": shape(label)}}
                    began = time.perf_counter()
                    es.search(index=index, query=body, size=0, request_cache=False)
                    timings[name].append((time.perf_counter() - began) * 1000)
        for name, values in timings.items():
            median, mean = statistics.median(values), statistics.fmean(values)
            print(f"{name:<26}{median:>10.2f}{mean:>9.2f}")
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    options.add_argument("--show", action="store_true", help="print the queries compared")
    options.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="count wall time, or this process's CPU time (steadier on a busy machine)",
    )
    options.add_argument("--es", metavar="URL", help="also measure label lookups on a node")
    options.add_argument("--items", type=int, default=50_000, help="items for --es")
    arguments = options.parse_args()
    seconds = arguments.seconds
    builder = luqum_builder()
    clock = CLOCKS[arguments.clock]
    print(
        f"python {platform.python_version()} on {platform.machine()}, {seconds:g}s per cell,"
        f" {arguments.clock} clock"
    )
    print(f"{'size':<8}{'clauses':>8}{'autotag q/s':>14}{'luqum q/s':>12}{'ratio':>8}")
    for name, clauses in (("small", 1), ("medium", 5), ("large", 30)):
        ours, theirs = build(clauses)
        autotag, luqum = compare(
            partial(lambda q: search.translate(search.parse(q)), ours),
            partial(lambda q: builder(luqum_parser.parse(q)), theirs),
            seconds,
            clock,
        )
        print(f"{name:<8}{clauses:>8}{autotag:>14,.0f}{luqum:>12,.0f}{autotag / luqum:>7.2f}x")
        if arguments.show:
            print(f"  autotag: {ours}\n  lucene:  {theirs}")
    if arguments.es:
        label_lookup(arguments.es, arguments.items, rounds=30)


if __name__ == "__main__":
    main()
