"""The main job behind ``autotag up``: a ready-to-query autotag on this machine.

Starts (or finds) Elasticsearch, creates the index behind its alias, loads the sample
predictions through the product's writer, tags a small synthetic image dataset with the shipped
tiny CLIP model and detector (recording their folder, so the review page shows them), prints the
cluster health, then starts one worker (``autotag worker``, a child process that executes runs)
and serves the API and the review page, and prints example queries to try with curl, and a
review that works: the main job makes a local review key on its first run (kept in the cache,
readable by its owner only), serves with it, and prints it for the page.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from api.settings import Settings
from cli.indexing import IndexJob, run_index_job
from cli.serve import serve as run_api
from indexer.models import TINY_CLIP
from indexer.sample import TRAINING_SETS, sample_items
from indexer.synthetic.dataset import MANIFEST_FILE, write_dataset
from store import schema as f
from store.admin import ensure_index
from store.connection import connect, ensure_elasticsearch
from store.migrate import migrate, needs_migration
from store.settings import StoreSettings
from store.writer import PredictionWriter, WriteResult

SAMPLE_SIZE = 200
SAMPLE_IMAGES = 40
SAMPLE_IMAGE_SEED = 2025
SAMPLE_TRAINING_SET = "tiny_v1"
REVIEW_KEY_FILE = "review-key"
REVIEW_KEY_NAME = "local"
EXAMPLE_QUERIES = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    'training_set = "tiny_v1" AND image_prefix:weather_rain AND score >= 0.5',
    'training_set = "model_v2" AND autotag_status = "pending"',
    'similar:"a snowy road at night"~5 AND object_prefix:car',
)


def load_sample(settings: StoreSettings, urls: list[str]) -> WriteResult:
    """Write the sample into the settings' index (idempotent: a second run skips every item).

    An index left by an older autotag (an older schema version) is first copied to the
    current one, as ``autotag migrate`` does.
    """
    client = connect(urls, settings=settings, request_timeout=settings.es_bulk_timeout)
    if needs_migration(client, settings.index):
        print(f"autotag: '{settings.index}' has an older schema; migrating it (autotag migrate)")
        report = migrate(client, settings.index)
        print(f"autotag: {report.target_count} items now in {report.plan.target}")
    ensure_index(client, settings.index)
    total = WriteResult()
    for training_set in TRAINING_SETS:
        writer = PredictionWriter(client, settings.index, training_set=training_set)
        total.add(writer.write(list(sample_items(SAMPLE_SIZE, training_set=training_set))))
    client.indices.refresh(index=settings.index)
    return total


def sample_images(settings: StoreSettings) -> Path:
    """The manifest of a small synthetic driving dataset, generated once into the cache."""
    folder = settings.cache_dir() / "sample-images"
    manifest = folder / MANIFEST_FILE
    if not manifest.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="sample-images-", dir=folder.parent))
        write_dataset(scratch, SAMPLE_IMAGES, seed=SAMPLE_IMAGE_SEED, dataset=SAMPLE_DATASET)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)  # whole or absent, never half written
        # The manifest names the images by absolute path: rewrite it for the final folder.
        manifest.write_text(manifest.read_text().replace(str(scratch), str(folder)))
    return manifest


def index_sample_images(settings: StoreSettings, urls: list[str]) -> int:
    """Tag the synthetic sample images with the shipped tiny models, as ``autotag index``."""
    print(
        f"autotag: tagging {SAMPLE_IMAGES} synthetic sample images (generated driving scenes, "
        "not photos) with the demo models: the shipped tiny ones, trained on that synthetic "
        'world only; their predictions\' model names start with "demo:"'
    )
    job = IndexJob(
        source=sample_images(settings), training_set=SAMPLE_TRAINING_SET, demo_models=True
    )
    return run_index_job(job, settings.model_copy(update={"es_url": ",".join(urls)}))


def local_review_key(settings: StoreSettings) -> str:
    """This machine's review secret for the main job: made on first use, owner-only."""
    path = settings.cache_dir() / REVIEW_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two first runs at once never overwrite each other's key.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_urlsafe(24) + "\n")
    path.chmod(0o600)
    return path.read_text().strip()


def with_local_review_key(settings: Settings, secret: str) -> Settings:
    """``settings`` whose review keys also accept the local key (named ``local``)."""
    configured = settings.review_api_keys.get_secret_value() if settings.review_api_keys else ""
    keys = ",".join(k for k in (configured, f"{REVIEW_KEY_NAME}:{secret}") if k)
    return settings.model_copy(update={"review_api_keys": SecretStr(keys)})


def review_example(settings: StoreSettings, urls: list[str], base: str, secret: str) -> str:
    """A curl that accepts one pending sample prediction, or ``""`` when none is pending."""
    pending = {"term": {f"{f.OBJECT_PREDICTIONS}.{f.PRED_STATUS}": "pending"}}
    found = connect(urls, settings=settings).search(
        index=settings.index,
        size=1,
        query={
            "nested": {"path": f.OBJECT_PREDICTIONS, "query": pending, "inner_hits": {"size": 1}}
        },
        sort=[{f.ITEM_ID: "asc"}],
        source_includes=[f.ITEM_ID],
    )
    hits = found["hits"]["hits"]
    if not hits:
        return ""
    item = hits[0]["_source"][f.ITEM_ID]
    inner = hits[0]["inner_hits"][f.OBJECT_PREDICTIONS]["hits"]["hits"][0]["_source"]
    return (
        f"  curl -s -X POST {base}/v1/items/{item}/predictions/{inner[f.PRED_ID]}/accept "
        f"-H 'X-API-Key: {secret}'"
    )


def page_invitation(base: str, secret: str) -> str:
    """Where the review page is, and the key to paste into it (the demo's local review key)."""
    return (
        f"autotag: the review page is at {base}/ (search, see and review the predictions);\n"
        f"  paste this review key into its 'Review key' box to review: {secret}"
    )


def run_demo(
    settings: Settings,
    *,
    serve: bool,
    host: str = "127.0.0.1",
    port: int = 8000,
    with_worker: bool = True,
) -> int:
    started = time.monotonic()
    print("autotag: finding or starting Elasticsearch ...", flush=True)
    urls = ensure_elasticsearch(settings)
    client = connect(urls, settings=settings)
    health = client.cluster.health()
    print(
        f"autotag: Elasticsearch at {', '.join(urls)}: cluster {health['cluster_name']} "
        f"is {health['status']} with {health['number_of_nodes']} node(s)"
    )
    result = load_sample(settings, urls)
    print(
        f"autotag: sample predictions loaded into '{settings.index}': {result.written} item "
        f"writes, {result.skipped} already there, {result.predictions} predictions, "
        f"{len(result.failed)} failed"
    )
    if index_sample_images(settings, urls) != 0:
        print("autotag: tagging the sample images failed (see above); going on without them")
    client.indices.refresh(index=settings.index)
    count = client.count(index=settings.index)["count"]
    print(f"autotag: {count} items searchable ({time.monotonic() - started:.1f}s)")
    secret = local_review_key(settings)
    base = f"http://{host}:{port}"
    print(
        "next:\n"
        "  autotag es status            # cluster health\n"
        "  autotag es stop              # stop the local cluster\n"
        f"  curl -s '{urls[0]}/{settings.index}/_count'"
    )
    print(f"autotag: your local review key is in {settings.cache_dir() / REVIEW_KEY_FILE}")
    print(page_invitation(base, secret))
    example = review_example(settings, urls, base, secret)
    if example:
        print("autotag: accept a suggested box (while the API is served):\n" + example)
    if serve:
        print(f"autotag: serving the API at {base} (Ctrl-C stops it); try:")
        for query in EXAMPLE_QUERIES:
            body = json.dumps({"query": query, "size": 3})
            print(f"  curl -s {base}/v1/search -H 'content-type: application/json' -d '{body}'")
        print(f"  curl -s {base}/v1/items/sample-00001\n  open {base}/ (the review page)")
        print(f"  open {base}/docs (the API)")
        served = with_local_review_key(settings, secret)
        if served.clip_weights is None:  # similar:"..." with the model of the sample's embeddings
            served = served.model_copy(update={"clip_weights": TINY_CLIP})
        worker = start_worker(urls) if with_worker else None
        who = (
            "workers started elsewhere tag"
            if worker is None
            else f"a worker (pid {worker.pid}) tags"
        )
        print(
            f"autotag: {who} runs; start one:\n"
            f"  curl -s -X POST {base}/v1/runs -H 'X-API-Key: {secret}' "
            "-H 'content-type: application/json' "
            f"""-d '{RUN_EXAMPLE}'\n"""
            "  autotag runs watch RUN_ID"
        )
        try:
            run_api(served.model_copy(update={"es_url": ",".join(urls)}), host=host, port=port)
        finally:
            if worker is not None:
                stop_worker(worker)
    return 0


# The dataset of the sample's synthetic images, and the run the main job suggests: tag them
# under another training set.
SAMPLE_DATASET: Final = "synthetic_drives"
RUN_EXAMPLE: Final = json.dumps({"select": {"dataset": SAMPLE_DATASET}, "training_set": "demo_v2"})


def start_worker(urls: list[str]) -> subprocess.Popen[bytes]:
    """``autotag worker`` as a child process (runs are tagged outside the API's process)."""
    env = {**os.environ, "AUTOTAG_ES_URL": ",".join(urls)}
    return subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], env=env)


def stop_worker(worker: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM (the worker gives its batch back), then SIGKILL if it does not exit in time."""
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
