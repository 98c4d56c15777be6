"""Benchmark runs: worker throughput against ``autotag index``, two workers, incremental lag.

Prints three tables:

1. **Throughput** on the same folder of images with the shipped demo models, each in its own
   process and into a fresh index, interleaved over ``--rounds`` rounds: ``autotag index
   FOLDER --demo-models`` (its own items/s: model loading excluded), then a run over the same
   items (registered first, as ``autotag watch`` names them) executed by one ``autotag worker``
   and then by two. A worker's rate is the run's (``GET /v1/runs/{id}``): items tagged per
   second from its first claimed batch to its end; workers load their models before the run
   is submitted (``--preload demo``), as ``autotag index`` loads them before it starts timing.
2. **Incremental lag**: with one warm worker and a dataset whose new items the demo models tag,
   ``--lag-items`` items are registered one at a time, every ``--lag-interval`` seconds (the
   registration the API's ``POST /v1/items`` runs); a poller searches every 0.1 s and records
   when each item is searchable with its predictions (``tagged_by`` the training set). Lag =
   that moment minus the moment its registration returned.

Needs Elasticsearch (``ES_URL`` or ``AUTOTAG_ES_URL``); everything it writes goes into throwaway
indexes, deleted at the end. On a shared machine, run it when nothing else heavy runs::

    .venv/bin/python -m bench.runs --images 1000 --unique 250
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from elasticsearch import Elasticsearch
from rich.console import Console
from rich.table import Table

from harness.images import ImageFormat, make_dataset
from harness.workers import WorkerProcess, start_worker, worker_env
from indexer.sources import scan_folder
from store import runs as r
from store import schema as f
from store.calls import drive
from store.connection import connect
from store.image_roots import roots_index_name
from store.mapping import versioned_index_name
from store.model_choice import DEMO_SET
from store.runs import DatasetAutotag, NewItem, Selection, SelectionKind
from store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[1]
TRAINING_SET = "bench"


def es_url() -> str:
    url = os.environ.get("AUTOTAG_ES_URL") or os.environ.get("ES_URL")
    if not url:
        raise SystemExit("set ES_URL (e.g. ES_URL=http://127.0.0.1:9200)")
    return url


@dataclass
class Scratch:
    """Throwaway indexes, deleted at the end."""

    client: Elasticsearch
    names: list[str] = field(default_factory=list)

    def name(self, kind: str) -> str:
        name = f"bench-runs-{kind}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def drop(self) -> None:
        for name in self.names:  # an alias's index is versioned (store.admin), and indexing
            # records its image roots beside it (store.image_roots)
            concrete = [name, versioned_index_name(name), roots_index_name(name)]
            self.client.indices.delete(index=concrete, ignore_unavailable=True)


def index_rate(url: str, folder: Path, index: str, cache: Path) -> float:
    """``autotag index FOLDER --demo-models`` in its own process: its items/s."""
    env = {**os.environ, "AUTOTAG_ES_URL": url, "AUTOTAG_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "cli.main", "index", str(folder), "--demo-models"]
    command += ["--training-set", TRAINING_SET, "--index", index, "--no-progress"]
    command += ["--failures-file", str(cache / "bench-failures.jsonl")]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    found = re.search(r"items/s\s*│\s*([\d.]+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"autotag index failed:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _ready(worker: WorkerProcess) -> bool:
    if worker.process.poll() is not None:
        raise RuntimeError(f"worker {worker.name} exited:\n{worker.output()}")
    return f"{worker.name}: ready" in worker.output()


def worker_rate(
    url: str, folder: Path, scratch: Scratch, cache: Path, workers: int, batch_size: int
) -> float:
    """A run over the folder's items by ``workers`` warm worker processes: the run's items/s."""
    client = scratch.client
    items, runs = scratch.name("items"), scratch.name("runs")
    listed = scan_folder(folder)
    new = [NewItem(i.item_id, i.uri, i.dataset, uploaded_at=i.uploaded_at) for i in listed.items]
    for start in range(0, len(new), 1000):
        drive(client, r.register_items(items, runs, new[start : start + 1000]))
    client.indices.refresh(index=items)
    env = worker_env(url, items, runs, cache, run_batch_size=batch_size, worker_device="cpu")
    logs = cache / "bench-logs"
    started = [start_worker(f"bench-{i}", env, logs, "--preload", "demo") for i in range(workers)]
    run = r.new_run(
        selection=Selection(SelectionKind.DATASET, dataset=listed.items[0].dataset),
        models=DEMO_SET,
        training_set=TRAINING_SET,
        items_index=items,
    )
    run_id = str(run[r.RUN_ID])

    def finished() -> bool:
        view = drive(client, r.get_run(runs, run_id, failures=False))
        return view is not None and view["state"] in ("done", "failed", "cancelled")

    try:
        for worker in started:  # every worker warm before the run exists
            _wait(partial(_ready, worker), 600, f"{worker.name} to load its models")
        drive(client, r.submit_run(runs, run))
        _wait(finished, 3600, "the run to finish")
    finally:
        for worker in started:
            worker.stop()
    view = drive(client, r.get_run(runs, run_id))
    if view is None or view["state"] != "done" or view["items"]["tagged"] != len(new):
        raise RuntimeError(f"the run did not tag every item: {view}")
    return float(view["rate"])


def throughput(args: argparse.Namespace, url: str, cache: Path, console: Console) -> None:
    folder = make_dataset(cache / "bench-runs", args.images, args.unique, ImageFormat())
    scratch = Scratch(connect(url))
    rows: list[tuple[float, float, float]] = []
    try:
        for round_ in range(1, args.rounds + 1):
            alone = index_rate(url, folder, scratch.name("index"), cache)
            console.print(f"round {round_}: autotag index {alone:.1f} items/s", highlight=False)
            one = worker_rate(url, folder, scratch, cache, 1, args.batch_size)
            console.print(f"round {round_}: one worker {one:.1f} items/s", highlight=False)
            two = worker_rate(url, folder, scratch, cache, 2, args.batch_size)
            console.print(f"round {round_}: two workers {two:.1f} items/s", highlight=False)
            rows.append((alone, one, two))
            scratch.drop()
            scratch.names.clear()
    finally:
        scratch.drop()
    table = Table(title=f"throughput, {args.images} images ({args.unique} unique), demo models")
    for name in ("round", "autotag index", "1 worker", "2 workers", "1 worker / index", "2 / 1"):
        table.add_column(name, justify="right")
    for n, (alone, one, two) in enumerate(rows, start=1):
        table.add_row(
            str(n),
            f"{alone:.1f}",
            f"{one:.1f}",
            f"{two:.1f}",
            f"{one / alone:.2f}x",
            f"{two / one:.2f}x",
        )
    medians = [statistics.median(col) for col in zip(*rows, strict=True)]
    table.add_row(
        "median",
        *(f"{m:.1f}" for m in medians),
        f"{medians[1] / medians[0]:.2f}x",
        f"{medians[2] / medians[1]:.2f}x",
    )
    console.print(table)


def lag(args: argparse.Namespace, url: str, cache: Path, console: Console) -> None:
    folder = make_dataset(cache / "bench-runs", args.unique, args.unique, ImageFormat())
    images = scan_folder(folder).items
    client = connect(url)
    scratch = Scratch(client)
    items, runs = scratch.name("items"), scratch.name("runs")
    training_set = "lag"
    drive(client, r.put_dataset_autotag(runs, DatasetAutotag("lag", DEMO_SET, training_set)))
    env = worker_env(url, items, runs, cache, worker_device="cpu")
    worker = start_worker("bench-lag", env, cache / "bench-logs", "--preload", "demo")
    registered: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        reader = connect(url)
        while not stop.is_set():
            pending = [i for i in list(registered) if i not in seen]
            if pending:
                found = reader.search(
                    index=items,
                    query={
                        "bool": {
                            "filter": [
                                {"ids": {"values": pending}},
                                {"term": {f.TAGGED_BY: training_set}},
                            ]
                        }
                    },
                    size=len(pending),
                    source=False,
                )
                now = time.monotonic()
                for hit in found["hits"]["hits"]:
                    seen.setdefault(hit["_id"], now)
            stop.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        _wait(lambda: _ready(worker), 600, "the worker to load its models")
        poller.start()
        for n in range(args.lag_items):
            image = images[n % len(images)]
            item_id = f"lag/{n:05d}"
            drive(client, r.register_items(items, runs, [NewItem(item_id, image.uri, "lag")]))
            registered[item_id] = time.monotonic()
            time.sleep(args.lag_interval)
        _wait(lambda: len(seen) == len(registered), 300, "every item to be searchable")
    finally:
        stop.set()
        worker.stop()
        scratch.drop()
    lags = sorted(seen[i] - registered[i] for i in registered)
    cuts = statistics.quantiles(lags, n=100, method="inclusive")
    table = Table(
        title=f"incremental lag: {args.lag_items} items, one every {args.lag_interval} s, "
        "one worker, demo models"
    )
    for name in ("p50", "p95", "max", "mean"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{cuts[49]:.2f} s",
        f"{cuts[94]:.2f} s",
        f"{lags[-1]:.2f} s",
        f"{statistics.fmean(lags):.2f} s",
    )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="images per throughput run")
    parser.add_argument("--unique", type=int, default=200, help="distinct rendered scenes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256, help="AUTOTAG_RUN_BATCH_SIZE")
    parser.add_argument("--lag-items", type=int, default=60)
    parser.add_argument("--lag-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args(argv)
    url = es_url()
    cache = StoreSettings().cache_dir()
    console = Console()
    console.print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_throughput:
        throughput(args, url, cache, console)
    if not args.skip_lag:
        lag(args, url, cache, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
