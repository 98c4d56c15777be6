"""The main job behind ``autotag up``: a ready-to-query autotag on this machine.

Starts (or finds) Elasticsearch, creates the index behind its alias, loads the sample
predictions through the product's writer, prints the cluster health and what to try next.
"""

from __future__ import annotations

import time

from indexer.admin import ensure_index
from indexer.mapping import INDEX_ALIAS
from indexer.sample import TRAINING_SETS, sample_items
from indexer.writer import PredictionWriter, WriteResult
from search.connection import connect, ensure_elasticsearch

SAMPLE_SIZE = 200


def load_sample(urls: list[str], alias: str = INDEX_ALIAS) -> WriteResult:
    """Write the sample through the writer (idempotent: a second run skips every item)."""
    client = connect(urls)
    ensure_index(client, alias)
    total = WriteResult()
    for training_set in TRAINING_SETS:
        writer = PredictionWriter(client, alias, training_set=training_set)
        total.add(writer.write(list(sample_items(SAMPLE_SIZE, training_set=training_set))))
    client.indices.refresh(index=alias)
    return total


def run_demo(*, serve: bool, host: str = "127.0.0.1", port: int = 8000) -> int:
    started = time.monotonic()
    print("autotag: finding or starting Elasticsearch ...", flush=True)
    urls = ensure_elasticsearch()
    client = connect(urls)
    health = client.cluster.health()
    print(
        f"autotag: Elasticsearch at {', '.join(urls)}: cluster {health['cluster_name']} "
        f"is {health['status']} with {health['number_of_nodes']} node(s)"
    )
    result = load_sample(urls)
    count = client.count(index=INDEX_ALIAS)["count"]
    print(
        f"autotag: sample loaded into '{INDEX_ALIAS}': {result.written} item writes, "
        f"{result.skipped} already there, {result.predictions} predictions, "
        f"{len(result.failed)} failed; {count} items searchable "
        f"({time.monotonic() - started:.1f}s)"
    )
    print(
        "next:\n"
        "  autotag es status            # cluster health\n"
        "  autotag es stop              # stop the local cluster\n"
        f"  curl -s '{urls[0]}/{INDEX_ALIAS}/_count'"
    )
    if serve:
        try:
            from api.serve import serve_from_cli
        except ImportError:
            print("autotag: the API is not part of this build yet; stopping here.")
            return 0
        return serve_from_cli(host=host, port=port, es_urls=urls)
    return 0
