"""Vector storage and search on our Elasticsearch: quantization, filtered kNN, writer cost.

    .venv/bin/python bench/vectors.py quantization --items 100000       # recall vs bytes/item
    .venv/bin/python bench/vectors.py knn --items 100000                # filtered kNN, load+query
    .venv/bin/python bench/vectors.py knn --skip-load --index NAME      # query a loaded index
    .venv/bin/python bench/vectors.py writer --items 20000              # writer with/without

Vectors are 512-dimensional (ViT-B-32's size), drawn by ``harness.vectors.ClusteredVectors``
(clustered around a shared direction like real CLIP embeddings; the run prints their mean
pairwise and nearest-neighbour cosine). Recall is measured against exact brute force over the
same vectors in numpy. Uses ``ES_URL`` or starts a local node. Run anything above 100k items
under ``flock /work/wt/bench.lock`` on the shared machine.

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
    args = parser.parse_args(argv)
    client = connect(ensure_elasticsearch(StoreSettings()), request_timeout=600)
    status: int = args.func(args, client)
    return status


if __name__ == "__main__":
    sys.exit(main())
