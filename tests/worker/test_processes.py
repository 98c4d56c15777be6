"""Real ``autotag worker`` processes against a real node: one killed with ``kill -9`` half way
through a batch, two runs of one training set, and an Elasticsearch node killed and restarted
under the workers. Every item must be tagged exactly once: written once (its ``_version``),
counted once, with no duplicate predictions."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from harness.workers import WorkerProcess, start_worker, worker_env
from store import runs as r
from store import schema as f
from store.calls import drive
from store.connection import connect
from store.model_choice import DEMO_SET
from store.provision import LocalCluster, ProvisionError, free_port
from store.runs import NewItem, Selection, SelectionKind
from store.settings import StoreSettings

pytestmark = [pytest.mark.es, pytest.mark.slow]

TRAINING_SET = "demo_v1"


def _register_copies(
    es: Elasticsearch, index: str, runs_index: str, scenes: list[dict[str, Any]], copies: int
) -> list[str]:
    """Each scene ``copies`` times, as items of datasets copy0, copy1, ... (same image file)."""
    new = [
        NewItem(f"copy{k}/{row['item_id']}", row["uri"], f"copy{k}")
        for k in range(copies)
        for row in scenes
    ]
    done = drive(es, r.register_items(index, runs_index, new))
    assert not done.failed
    es.indices.refresh(index=index)
    return [item.item_id for item in new]


def _submit(es: Elasticsearch, runs_index: str, index: str, datasets: list[str]) -> str:
    selection = Selection(
        SelectionKind.QUERY,
        query=" OR ".join(f'dataset = "{d}"' for d in datasets),
        dsl={"terms": {f.DATASET: datasets}},
    )
    run = r.new_run(
        selection=selection, models=DEMO_SET, training_set=TRAINING_SET, items_index=index
    )
    drive(es, r.submit_run(runs_index, run))
    return str(run[r.RUN_ID])


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _view(es: Elasticsearch, runs_index: str, run_id: str) -> dict[str, Any]:
    view = drive(es, r.get_run(runs_index, run_id))
    assert view is not None
    return view


def _batches(es: Elasticsearch, runs_index: str, run_id: str) -> list[dict[str, Any]]:
    es.indices.refresh(index=runs_index)
    plan = es.get(index=runs_index, id=run_id)["_source"].get(r.PLAN_KEY)
    if plan is None:
        return []  # not planned yet
    hits = es.search(index=runs_index, query=r.plan_batches(plan), size=1000)["hits"]["hits"]
    return [hit["_source"] for hit in hits]


def _tagged_once(es: Elasticsearch, index: str, item_ids: list[str]) -> None:
    """Every item written exactly once since it was registered, with one set of predictions."""
    es.indices.refresh(index=index)
    for start in range(0, len(item_ids), 500):
        docs = es.mget(index=index, ids=item_ids[start : start + 500])["docs"]
        for doc in docs:
            assert doc["found"], doc["_id"]
            assert doc["_version"] == 2, (doc["_id"], doc["_version"])  # registered, tagged
            source = doc["_source"]
            assert source[f.TAGGED_BY] == [TRAINING_SET]
            predictions = source[f.IMAGE_PREDICTIONS] + source[f.OBJECT_PREDICTIONS]
            assert predictions
            ids = [p[f.PRED_ID] for p in predictions]
            assert len(ids) == len(set(ids)), doc["_id"]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def test_a_worker_killed_half_way_loses_its_batch_to_another_and_runs_never_interleave(
    es: Elasticsearch,
    es_url: str,
    item_index: str,
    runs_index: str,
    scenes: list[dict[str, Any]],
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    items = _register_copies(es, item_index, runs_index, scenes, copies=4)
    first = _submit(es, runs_index, item_index, ["copy0", "copy1", "copy2"])
    second = _submit(es, runs_index, item_index, ["copy3"])  # the same training set
    env = worker_env(
        es_url,
        item_index,
        runs_index,
        tmp_path / "cache",
        run_batch_size=12,
        worker_write_batch=2,
        run_lease_s=4,
        worker_poll_s=0.2,
        worker_device="cpu",
    )
    victim = start_worker("victim", env, tmp_path / "logs")
    survivor = start_worker("survivor", env, tmp_path / "logs")
    workers += [victim, survivor]

    # Kill the victim when it has written part of a batch, but not all of it.
    held: dict[str, Any] = {}

    def half_written() -> bool:
        assert victim.process.poll() is None, victim.output()
        for batch in _batches(es, runs_index, first):
            if batch[r.STATE] == "claimed" and batch.get(r.LEASE_OWNER) == "victim":
                ids = batch[r.ITEM_IDS]
                es.indices.refresh(index=item_index)
                written = es.count(
                    index=item_index,
                    query={
                        "bool": {
                            "filter": [
                                {"ids": {"values": ids}},
                                {"term": {f.TAGGED_BY: TRAINING_SET}},
                            ]
                        }
                    },
                )["count"]
                if 0 < written < len(ids):
                    victim.kill()
                    held.update(batch=batch, written=written)
                    return True
        return False

    _wait(half_written, 240, "the victim to write part of a batch")
    _wait(lambda: _view(es, runs_index, second)["state"] == "done", 240, "both runs to finish")

    one, two = _view(es, runs_index, first), _view(es, runs_index, second)
    assert (one["state"], one["items"]["total"], one["items"]["tagged"]) == ("done", 72, 72)
    assert (two["state"], two["items"]["total"], two["items"]["tagged"]) == ("done", 24, 24)
    assert one["items"]["failed"] == two["items"]["failed"] == 0
    _tagged_once(es, item_index, items)
    seq = held["batch"][r.SEQ]
    taken_over = next(b for b in _batches(es, runs_index, first) if b[r.SEQ] == seq)
    assert taken_over[r.LEASE_OWNER] == "survivor"
    assert taken_over[r.ATTEMPTS] == held["batch"][r.ATTEMPTS] + 1  # one claim after the kill
    assert taken_over[r.TAGGED] == 12  # the victim's items counted once, not again
    # The second run of the training set began only after the first had finished writing.
    first_done = max(b[r.DONE_AT] for b in _batches(es, runs_index, first))
    second_began = min(b[r.CLAIMED_AT] for b in _batches(es, runs_index, second))
    assert second_began > first_done
    assert survivor.stop() == 0


@pytest.fixture
def own_node() -> Iterator[LocalCluster]:
    """A single-node cluster of this test's own, on free ports: it is killed and restarted."""
    settings = StoreSettings()
    cluster = LocalCluster(
        name=f"autotag-restart-{uuid.uuid4().hex[:8]}",
        http_port=free_port(),
        transport_port=free_port(),
        heap=os.environ.get("AUTOTAG_TEST_ES_HEAP", "512m"),
        version=settings.es_version,
        cache_dir=settings.cache_dir(),
        service_user=settings.es_user,
        java_home=settings.es_java_home,
        maven_repo=settings.maven_repo,
    )
    try:
        cluster.start()
    except ProvisionError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no local cluster could be started: {error}")
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_elasticsearch_restarted_mid_run_loses_and_duplicates_nothing(
    own_node: LocalCluster,
    scenes: list[dict[str, Any]],
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    es = connect(own_node.url)
    index, runs_index = "items", "runs"
    items = _register_copies(es, index, runs_index, scenes, copies=4)
    run_id = _submit(es, runs_index, index, [f"copy{k}" for k in range(4)])
    env = worker_env(
        own_node.url,
        index,
        runs_index,
        tmp_path / "cache",
        run_batch_size=8,
        worker_write_batch=4,
        run_lease_s=5,
        worker_poll_s=0.2,
        worker_device="cpu",
        es_request_timeout=3,
    )
    workers += [start_worker(f"w{i}", env, tmp_path / "logs", "--exit-when-idle") for i in (1, 2)]

    def some_done() -> bool:
        return int(_view(es, runs_index, run_id)["items"]["tagged"]) >= 16

    _wait(some_done, 240, "two batches")
    own_node.kill_node(0)  # kill -9 the node, mid-run
    time.sleep(5)  # the workers meet a dead node for a while
    own_node.start_node(0)
    own_node.wait_healthy()
    es.cluster.health(wait_for_status="green", timeout="60s")
    _wait(lambda: _view(es, runs_index, run_id)["state"] == "done", 300, "the run to finish")
    for worker in workers:
        assert worker.wait(120) == 0, worker.output()

    view = _view(es, runs_index, run_id)
    assert (view["items"]["total"], view["items"]["tagged"], view["items"]["failed"]) == (96, 96, 0)
    _tagged_once(es, index, items)
    assert sum(worker.backoffs() for worker in workers) > 0  # they did meet the dead node
