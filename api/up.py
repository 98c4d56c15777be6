"""The main job behind ``autotag up``: a ready-to-query autotag on this machine.

Starts (or finds) Elasticsearch, creates the index behind its alias, loads the sample
predictions through the product's writer, prints the cluster health, then serves the API and
prints example queries to try with curl.
"""

from __future__ import annotations

import json
import time

from api.serve import serve as run_api
from api.settings import Settings
from indexer.admin import ensure_index
from indexer.mapping import INDEX_ALIAS
from indexer.sample import TRAINING_SETS, sample_items
from indexer.writer import PredictionWriter, WriteResult
from search.connection import connect, ensure_elasticsearch

SAMPLE_SIZE = 200
EXAMPLE_QUERIES = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "model_v2" AND autotag_status = "pending"',
)


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
        base = f"http://{host}:{port}"
        print(f"autotag: serving the API at {base} (Ctrl-C stops it); try:")
        for query in EXAMPLE_QUERIES:
            body = json.dumps({"query": query, "size": 3})
            print(f"  curl -s {base}/v1/search -H 'content-type: application/json' -d '{body}'")
        print(f"  curl -s {base}/v1/items/sample-00001\n  open {base}/docs")
        run_api(Settings(es_url=",".join(urls)), host=host, port=port)
    return 0
