"""Vector storage and search on our Elasticsearch: quantization, filtered kNN, writer cost.

    .venv/bin/python bench/vectors.py quantization --items 100000       # recall vs bytes/item
    .venv/bin/python bench/vectors.py knn --items 100000                # filtered kNN, load+query
    .venv/bin/python bench/vectors.py knn --skip-load --index NAME      # query a loaded index
    .venv/bin/python bench/vectors.py writer --items 20000              # writer with/without

Vectors are 512-dimensional (ViT-B-32's size), drawn by ``harness.vectors.ClusteredVectors``
(clustered around a shared direction like real CLIP embeddings; the run prints their mean
pairwise and nearest-neighbour cosine). Recall is measured against exact brute force over the
same vectors in numpy. Uses ``ES_URL`` or starts a local node. Runs above 100k items are heavy:
run one at a time on a shared machine.

``quantization`` loads the same vectors into one index per ``index_options`` type (float
``hnsw``, ``int8_hnsw``, ``int4_hnsw``, ``bbq_hnsw``), force-merges each to one segment and
prints bytes per item (the vector field's own storage from ``_disk_usage``, and the whole
index) next to recall@10 and recall@100 at a few ``num_candidates``.

``knn`` loads product items (``indexer.prediction_generator``: predictions, review states,
metadata) with an embedding each, into the product mapping, and times filtered kNN at about
1%, 10% and 100% filter selectivity next to the same filter without kNN, with recall against
brute force restricted to the filter's items.

``writer`` times ``PredictionWriter`` loading the same items with and without an embedding.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
from elasticsearch import Elasticsearch

from harness.vectors import ClusteredVectors, Matrix, exact_top_k, recall
from store.connection import connect, ensure_elasticsearch
from store.settings import StoreSettings

QUANTIZATIONS = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw")
_NDJSON = {"content-type": "application/x-ndjson", "accept": "application/json"}


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def data_stats(data: Matrix, queries: Matrix) -> str:
    sample = data[: min(len(data), 2000)]
    pairs = sample @ sample.T
    mean_pair = float(pairs[np.triu_indices(len(sample), 1)].mean())
    top = exact_top_k(data, queries[:50], 1)
    nearest = float(np.mean([data[t[0]] @ q for t, q in zip(top, queries[:50], strict=True)]))
    return f"mean pairwise cosine {mean_pair:.3f}, nearest-neighbour cosine {nearest:.3f}"


def vectors(generator: ClusteredVectors, items: int, *, chunk: int = 50_000) -> Matrix:
    return np.concatenate(
        [generator.block(s, min(chunk, items - s)) for s in range(0, items, chunk)]
    )


def bulk(client: Elasticsearch, lines: Iterator[bytes], *, batch: int = 1000) -> None:
    """Send pre-serialized ``_bulk`` lines (action and source alternate), two requests at once."""

    def send(body: bytes) -> None:
        response = client.perform_request("POST", "/_bulk", body=body, headers=_NDJSON)
        if response.body["errors"]:
            failed = [i for i in response.body["items"] if "error" in next(iter(i.values()))]
            raise SystemExit(f"bulk errors: {failed[:2]}")

    def bodies() -> Iterator[bytes]:
        buffer: list[bytes] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= 2 * batch:
                yield b"\n".join(buffer) + b"\n"
                buffer = []
        if buffer:
            yield b"\n".join(buffer) + b"\n"

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(send, bodies()))


def merged_size(client: Elasticsearch, index: str, field: str) -> tuple[int, int]:
    """(whole index bytes, the vector field's bytes) after one-segment force merge."""
    client.indices.refresh(index=index)
    client.options(request_timeout=3600).indices.forcemerge(index=index, max_num_segments=1)
    stats = client.indices.stats(index=index, metric=["store"])["_all"]["primaries"]
    usage = client.perform_request(
        "POST", f"/{index}/_disk_usage", params={"run_expensive_tasks": "true"}
    ).body
    fields = usage[index]["fields"]
    own = sum(int(v["total_in_bytes"]) for k, v in fields.items() if k == field)
    return int(stats["store"]["size_in_bytes"]), own


def knn_ids(
    client: Elasticsearch,
    index: str,
    field: str,
    query: Matrix,
    k: int,
    candidates: int,
    filter_query: dict[str, Any] | None = None,
) -> tuple[list[int], float]:
    knn: dict[str, Any] = {
        "field": field,
        "query_vector": query.tolist(),
        "k": k,
        "num_candidates": candidates,
    }
    if filter_query is not None:
        knn["filter"] = filter_query
    started = time.perf_counter()
    response = client.search(
        index=index, query={"knn": knn}, size=k, source=False, docvalue_fields=[{"field": "n"}]
    )
    spent = (time.perf_counter() - started) * 1000
    return [int(hit["fields"]["n"][0]) for hit in response["hits"]["hits"]], spent


# --- quantization ------------------------------------------------------------------------------


def quantization(args: argparse.Namespace, client: Elasticsearch) -> int:
    generator = ClusteredVectors(dims=args.dims)
    started = time.perf_counter()
    data = vectors(generator, args.items)
    queries = generator.block(0, args.queries, stream=2)
    spent = time.perf_counter() - started
    print(f"{args.items} vectors of {args.dims} dims generated in {spent:.0f}s")
    print(data_stats(data, queries))
    exact = {k: exact_top_k(data, queries, k) for k in (10, 100)}
    print(f"\n{'type':<12} {'source':<8} {'load s':>7} {'B/item':>7} {'vec B/item':>10} "
          f"{'k':>4} {'cands':>6} {'recall':>7} {'p50 ms':>7}")  # fmt: skip
    types = args.types.split(",")
    for spec in types:
        kind, _, oversample = spec.partition(":")
        options: dict[str, Any] = {"type": kind}
        if oversample:
            options["rescore_vector"] = {"oversample": float(oversample)}
        for source_vectors in args.source_vectors:
            index = f"bench-vectors-{kind.replace('_', '-')}{'-src' if source_vectors else ''}"
            client.indices.delete(index=index, ignore_unavailable=True)
            client.indices.create(
                index=index,
                mappings={
                    "properties": {
                        "n": {"type": "integer"},
                        "v": {
                            "type": "dense_vector",
                            "similarity": "cosine",
                            "index_options": options,
                        },
                    }
                },
                settings={
                    "number_of_shards": 1,
                    "number_of_replicas": 0,
                    "refresh_interval": "30s",
                    "index.mapping.exclude_source_vectors": not source_vectors,
                },
            )

            def lines(index: str = index) -> Iterator[bytes]:
                for n, vector in enumerate(data):
                    yield orjson.dumps({"index": {"_index": index, "_id": str(n)}})
                    yield orjson.dumps({"n": n, "v": vector}, option=orjson.OPT_SERIALIZE_NUMPY)

            started = time.perf_counter()
            bulk(client, lines())
            load_s = time.perf_counter() - started
            total, own = merged_size(client, index, "v")
            for k in (10, 100):
                for candidates in sorted({max(k, c) for c in args.candidates}):
                    found, times = [], []
                    for query in queries:
                        ids, ms = knn_ids(client, index, "v", query, k, candidates)
                        found.append(ids)
                        times.append(ms)
                    print(
                        f"{spec:<12} {'kept' if source_vectors else 'omitted':<8} {load_s:>7.0f} "
                        f"{total / args.items:>7.0f} {own / args.items:>10.0f} {k:>4} "
                        f"{candidates:>6} {recall(found, exact[k]):>7.3f} "
                        f"{statistics.median(times):>7.1f}",
                        flush=True,
                    )
            if not args.keep:
                client.indices.delete(index=index)
    return 0


# --- filtered kNN at scale ------------------------------------------------------------------

# (name, filter in the language or None): about 1%, 10% and 100% of the generated items
# (dataset cycles over 7 values, metadata.camera over 8, most items carry a car).
FILTERS: tuple[tuple[str, str | None], ...] = (
    ("~1%", 'dataset = "drives_3" AND metadata.camera = 3 AND object_prefix:car'),
    ("~10%", "metadata.camera = 3 AND object_prefix:car"),
    ("100%", None),
)


def item_lines(
    index: str, items: int, generator: ClusteredVectors, start: int = 0
) -> Iterator[bytes]:
    """Bulk lines of generated product items with their embedding (the writer's documents)."""
    from indexer.prediction_generator import generate
    from store import schema as f
    from store.clock import utc_iso
    from store.writer import merge_item

    now = utc_iso()
    chunk = 10_000
    for offset in range(start, start + items, chunk):
        count = min(chunk, start + items - offset)
        vectors = generator.block(offset, count)
        for row, entry in enumerate(generate(count, start=offset)):
            doc = merge_item(None, entry, training_set="bench", now=now)
            doc[f.EMBEDDING] = vectors[row]
            yield orjson.dumps({"create": {"_index": index, "_id": entry.item_id}})
            yield orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def create_items_index(client: Elasticsearch, index: str) -> None:
    from store.mapping import index_settings, item_mapping

    client.indices.delete(index=index, ignore_unavailable=True)
    settings = {**index_settings(), "refresh_interval": "30s"}
    client.indices.create(index=index, mappings=item_mapping(), settings=settings)


def matching_rows(client: Elasticsearch, index: str, query: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Row numbers (``item-<n>``) of every item ``query`` matches."""
    rows: list[int] = []
    pit = client.open_point_in_time(index=index, keep_alive="5m")["id"]
    after = None
    try:
        while True:
            body: dict[str, Any] = {
                "query": query,
                "size": 10_000,
                "sort": ["_shard_doc"],
                "pit": {"id": pit, "keep_alive": "5m"},
                "_source": False,
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            hits = client.search(body=body)["hits"]["hits"]
            if not hits:
                break
            rows += [int(hit["_id"].removeprefix("item-")) for hit in hits]
            after = hits[-1]["sort"]
    finally:
        client.close_point_in_time(id=pit)
    return np.asarray(rows, dtype=np.int64)


def knn(args: argparse.Namespace, client: Elasticsearch) -> int:
    from search import parse, translate
    from search.ast import Similar, SimilarityKind
    from search.similarity import knn_query

    generator = ClusteredVectors(dims=args.dims)
    index = args.index
    if not args.skip_load:
        create_items_index(client, index)
        started = time.perf_counter()
        bulk(client, item_lines(index, args.items, generator), batch=500)
        load_s = time.perf_counter() - started
        client.indices.refresh(index=index)
        print(f"loaded {args.items} items with {args.dims}-dim embeddings in {load_s:.0f}s "
              f"({args.items / load_s:.0f} items/s)", flush=True)  # fmt: skip
        if args.merge:
            started = time.perf_counter()
            client.options(request_timeout=7200).indices.forcemerge(index=index, max_num_segments=1)
            print(f"force merge to one segment: {time.perf_counter() - started:.0f}s", flush=True)
    client.indices.refresh(index=index)
    items = int(client.count(index=index)["count"])
    segments = client.indices.segments(index=index)["indices"][index]["shards"]["0"][0]
    stats = client.indices.stats(index=index, metric=["store"])["_all"]["primaries"]
    per_item = stats["store"]["size_in_bytes"] / items
    print(f"{items} items, {len(segments['segments'])} segment(s), {per_item:.0f} bytes/item")
    started = time.perf_counter()
    data = vectors(generator, items)
    queries = generator.block(0, args.queries, stream=2)
    print(f"vectors regenerated in {time.perf_counter() - started:.0f}s; "
          + data_stats(data, queries), flush=True)  # fmt: skip
    clause = Similar(SimilarityKind.TEXT, "bench")
    print(f"\n{'filter':<6} {'selectivity':>11} {'k':>4} {'filter p50':>10} {'p99':>7} "
          f"{'kNN p50':>8} {'p99':>7} {'recall':>7}")  # fmt: skip
    for label, text in FILTERS:
        rest = translate(parse(text)) if text is not None else None
        filter_only = rest if rest is not None else {"match_all": {}}
        allowed = None
        selectivity = 1.0
        if rest is not None:
            rows = matching_rows(client, index, rest)
            allowed = np.zeros(items, dtype=bool)
            allowed[rows] = True
            selectivity = len(rows) / items
        for k in (10, 100):
            exact = exact_top_k(data, queries, k, allowed=allowed)
            plain, timed, found = [], [], []
            for query in queries:
                started = time.perf_counter()
                client.search(index=index, query=filter_only, size=k, source=False)
                plain.append((time.perf_counter() - started) * 1000)
                body = knn_query(clause, query.tolist(), rest, k=k)
                started = time.perf_counter()
                hits = client.search(index=index, query=body, size=k, source=False)
                timed.append((time.perf_counter() - started) * 1000)
                found.append([int(h["_id"].removeprefix("item-")) for h in hits["hits"]["hits"]])
            print(
                f"{label:<6} {selectivity:>10.2%} {k:>4} {statistics.median(plain):>10.1f} "
                f"{percentile(plain, 0.99):>7.1f} {statistics.median(timed):>8.1f} "
                f"{percentile(timed, 0.99):>7.1f} {recall(found, exact):>7.3f}",
                flush=True,
            )
    if args.autotag:
        autotag_run(client, index, items)
    return 0


def autotag_run(client: Elasticsearch, index: str, items: int) -> None:
    """Create an autotag over every item: fit, then score and write, timed by stage."""
    from autotags import jobs
    from autotags.registry import Registry
    from autotags.training import Examples
    from store.embeddings import EmbeddingModel, record_embedding_model

    record_embedding_model(client, index, EmbeddingModel("bench:synthetic", "0" * 64, 512))
    registry = Registry(client, index)
    if registry.get("bench_concept") is not None:
        jobs.delete(client, index, "bench_concept")
    positives = Examples(tuple(f"item-{n:09d}" for n in range(0, 1000, 100)))
    started = time.perf_counter()
    jobs.create(client, index, "bench_concept", positives, run_scoring=False)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    version = jobs.score(client, index, "bench_concept")
    score_s = time.perf_counter() - started
    stages = version.scoring.seconds
    print(
        f"\nautotag over {items} items: fit (examples read + fit) {fit_s:.1f}s; scoring "
        f"{score_s:.1f}s wall (read {stages['read']:.1f}s, score {stages['score']:.1f}s, "
        f"write {stages['write']:.1f}s); {version.scoring.scored} predictions written, "
        f"{version.scoring.failed} failed; total {fit_s + score_s:.1f}s",
        flush=True,
    )


# --- writer with and without embeddings -----------------------------------------------------


def writer(args: argparse.Namespace, client: Elasticsearch) -> int:
    from indexer.prediction_generator import generate
    from store import schema as f
    from store.writer import ItemPredictions, PredictionWriter

    generator = ClusteredVectors(dims=args.dims)
    results = {}
    for with_vectors in (False, True):
        index = f"bench-vectors-writer-{'with' if with_vectors else 'without'}"
        create_items_index(client, index)
        writer = PredictionWriter(client, index, training_set="bench", batch_size=500)
        spent = 0.0
        for offset in range(0, args.items, 10_000):
            count = min(10_000, args.items - offset)
            block = generator.block(offset, count) if with_vectors else None
            entries = []
            for row, entry in enumerate(generate(count, start=offset)):
                if block is not None:
                    entry = ItemPredictions(
                        {**entry.item, f.EMBEDDING: block[row]},
                        entry.image_predictions,
                        entry.object_predictions,
                    )
                entries.append(entry)
            batches = [entries[i : i + 500] for i in range(0, len(entries), 500)]
            started = time.perf_counter()
            for result in writer.write_many(batches, in_flight=2):
                if result.failed:
                    raise SystemExit(f"writer failed: {result.failed[:2]}")
            spent += time.perf_counter() - started
        client.indices.refresh(index=index)
        client.options(request_timeout=3600).indices.forcemerge(index=index, max_num_segments=1)
        stats = client.indices.stats(index=index, metric=["store"])["_all"]["primaries"]
        results[with_vectors] = (spent, int(stats["store"]["size_in_bytes"]))
        print(
            f"{'with' if with_vectors else 'without'} embeddings: {args.items / spent:.0f} "
            f"items/s, {results[with_vectors][1] / args.items:.0f} bytes/item",
            flush=True,
        )
        if not args.keep:
            client.indices.delete(index=index)
    print(
        f"writer throughput with / without embeddings: {results[False][0] / results[True][0]:.2f}x"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quant = commands.add_parser("quantization", help="recall against bytes per item")
    quant.add_argument("--items", type=int, default=100_000)
    quant.add_argument("--dims", type=int, default=512)
    quant.add_argument("--queries", type=int, default=200)
    quant.add_argument(
        "--types",
        default=",".join(QUANTIZATIONS),
        help="index_options types, each optionally with :OVERSAMPLE for rescore_vector",
    )
    quant.add_argument(
        "--candidates", type=lambda s: [int(x) for x in s.split(",")], default=[100, 200, 500]
    )
    quant.add_argument(
        "--source-vectors",
        type=lambda s: [x == "kept" for x in s.split(",")],
        default=[False],
        help="omitted (Elasticsearch 9's default: rebuilt from the vector storage on read), "
        "kept (index.mapping.exclude_source_vectors: false), or both: omitted,kept",
    )
    quant.add_argument("--keep", action="store_true", help="keep the indexes")
    quant.set_defaults(func=quantization)
    scale = commands.add_parser("knn", help="filtered kNN latency and recall, autotag timing")
    scale.add_argument("--items", type=int, default=100_000)
    scale.add_argument("--dims", type=int, default=512)
    scale.add_argument("--queries", type=int, default=200)
    scale.add_argument("--index", default="bench-vectors-knn")
    scale.add_argument("--skip-load", action="store_true", help="query the index as loaded")
    scale.add_argument("--merge", action="store_true", help="force-merge to one segment")
    scale.add_argument("--autotag", action="store_true", help="then time creating an autotag")
    scale.set_defaults(func=knn)
    write = commands.add_parser("writer", help="PredictionWriter with and without embeddings")
    write.add_argument("--items", type=int, default=20_000)
    write.add_argument("--dims", type=int, default=512)
    write.add_argument("--keep", action="store_true")
    write.set_defaults(func=writer)
    args = parser.parse_args(argv)
    client = connect(ensure_elasticsearch(StoreSettings()), request_timeout=600)
    status: int = args.func(args, client)
    return status


if __name__ == "__main__":
    sys.exit(main())
