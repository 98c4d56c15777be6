"""The main job behind ``autotag up``: a ready-to-query autotag on this machine.

Starts (or finds) Elasticsearch, creates the index behind its alias, loads the sample
predictions through the product's writer, tags a small synthetic image dataset with the shipped
tiny CLIP model and detector, prints the cluster health, then serves the API and prints example
queries to try with curl.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from api.settings import Settings
from cli.indexing import main as index_main
from cli.serve import serve as run_api
from indexer.sample import TRAINING_SETS, sample_items
from indexer.synthetic.dataset import MANIFEST_FILE, write_dataset
from store.admin import ensure_index
from store.connection import connect, ensure_elasticsearch
from store.mapping import INDEX_ALIAS
from store.provision import default_cache_dir
from store.writer import PredictionWriter, WriteResult

SAMPLE_SIZE = 200
SAMPLE_IMAGES = 40
SAMPLE_IMAGE_SEED = 2025
SAMPLE_TRAINING_SET = "tiny_v1"
EXAMPLE_QUERIES = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "tiny_v1" AND image_prefix:weather_rain AND score >= 0.5',
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


def sample_images() -> Path:
    """The manifest of a small synthetic driving dataset, generated once into the cache."""
    folder = default_cache_dir() / "sample-images"
    manifest = folder / MANIFEST_FILE
    if not manifest.exists():
        scratch = Path(tempfile.mkdtemp(prefix="sample-images-", dir=folder.parent))
        write_dataset(scratch, SAMPLE_IMAGES, seed=SAMPLE_IMAGE_SEED, dataset="synthetic_drives")
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)  # whole or absent, never half written
        # The manifest names the images by absolute path: rewrite it for the final folder.
        manifest.write_text(manifest.read_text().replace(str(scratch), str(folder)))
    return manifest


def index_sample_images(alias: str = INDEX_ALIAS) -> int:
    """Tag the synthetic sample images with the shipped tiny models (``autotag index``)."""
    print(f"autotag: tagging {SAMPLE_IMAGES} synthetic sample images with the shipped models")
    manifest = sample_images()
    return index_main(
        ["index", str(manifest), "--training-set", SAMPLE_TRAINING_SET, "--index", alias]
    )


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
    print(
        f"autotag: sample predictions loaded into '{INDEX_ALIAS}': {result.written} item "
        f"writes, {result.skipped} already there, {result.predictions} predictions, "
        f"{len(result.failed)} failed"
    )
    if index_sample_images() != 0:
        print("autotag: tagging the sample images failed (see above); going on without them")
    client.indices.refresh(index=INDEX_ALIAS)
    count = client.count(index=INDEX_ALIAS)["count"]
    print(f"autotag: {count} items searchable ({time.monotonic() - started:.1f}s)")
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
