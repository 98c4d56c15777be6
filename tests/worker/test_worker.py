"""Workers in this process against a real node, with the shipped demo models: every item tagged
exactly once, unreadable images listed and never fatal, cancel, incremental tagging, models
that cannot be loaded. (Real worker processes, kill -9 and an Elasticsearch restart are in
test_processes.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from indexer.models import DEMO_MODEL_PREFIX
from store import runs as r
from store import schema as f
from store.calls import drive
from store.model_choice import DEMO_SET, ModelSet
from store.runs import DatasetAutotag, NewItem, Selection, SelectionKind
from tests.indexer.stubs import write_bad_files
from tests.worker.conftest import MakeWorker

pytestmark = pytest.mark.es


def register(
    es: Elasticsearch, item_index: str, runs_index: str, rows: list[dict[str, Any]]
) -> list[str]:
    new = [NewItem(row["item_id"], row["uri"], row["dataset"], row["metadata"]) for row in rows]
    done = drive(es, r.register_items(item_index, runs_index, new))
    assert not done.failed
    es.indices.refresh(index=item_index)
    return [item.item_id for item in new]


def submit(
    es: Elasticsearch,
    runs_index: str,
    item_index: str,
    selection: Selection,
    *,
    training_set: str = "demo_v1",
    models: ModelSet = DEMO_SET,
) -> str:
    run = r.new_run(
        selection=selection, models=models, training_set=training_set, items_index=item_index
    )
    drive(es, r.submit_run(runs_index, run))
    return str(run[r.RUN_ID])


def view_of(es: Elasticsearch, runs_index: str, run_id: str) -> dict[str, Any]:
    view = drive(es, r.get_run(runs_index, run_id))
    assert view is not None
    return view


def test_a_run_tags_every_item_once_and_lists_unreadable_images(
    es: Elasticsearch,
    item_index: str,
    runs_index: str,
    scenes: list[dict[str, Any]],
    make_worker: MakeWorker,
    tmp_path: Path,
) -> None:
    good = register(es, item_index, runs_index, scenes[:10])
    bad_files = write_bad_files(tmp_path / "bad")
    bad = [
        {"item_id": f"bad/{name}", "uri": str(tmp_path / "bad" / name), "dataset": "drives"}
        for name in bad_files
        if name != "huge.png"  # 9 Mpx: under the default limit, so a readable image
    ]
    bad.append({"item_id": "bad/missing", "uri": "/nowhere/x.png", "dataset": "drives"})
    bad.append({"item_id": "bad/remote", "uri": "s3://bucket/x.png", "dataset": "drives"})
    register(es, item_index, runs_index, [{**row, "metadata": {}} for row in bad])
    run_id = submit(es, runs_index, item_index, Selection(SelectionKind.DATASET, dataset="drives"))

    stats = make_worker(run_batch_size=4).run(exit_when_idle=True)

    view = view_of(es, runs_index, run_id)
    assert view["state"] == "done"
    assert view["items"]["total"] == 14
    assert (view["items"]["tagged"], view["items"]["failed"]) == (10, 4)
    reasons = {failure["item_id"]: failure for failure in view["failures"]}
    assert set(reasons) == {row["item_id"] for row in bad}
    assert reasons["bad/missing"]["reason"] == "file not found"
    assert "not a local file" in reasons["bad/remote"]["reason"]
    assert reasons["bad/text.png"]["stage"] == "decode"
    assert stats.batches == 4  # 14 items in batches of 4
    es.indices.refresh(index=item_index)
    for item_id in good:
        got = es.get(index=item_index, id=item_id)
        assert got["_version"] == 2  # registered, then written once
        doc = got["_source"]
        assert doc[f.TAGGED_BY] == ["demo_v1"]
        models = {p[f.PRED_MODEL] for p in doc[f.IMAGE_PREDICTIONS]}
        assert models
        assert all(model.startswith(DEMO_MODEL_PREFIX) for model in models)
        ids = [p[f.PRED_ID] for p in doc[f.IMAGE_PREDICTIONS] + doc[f.OBJECT_PREDICTIONS]]
        assert len(ids) == len(set(ids))
    assert view["items"]["predictions"] == sum(
        len(d[f.IMAGE_PREDICTIONS]) + len(d[f.OBJECT_PREDICTIONS])
        for d in (es.get(index=item_index, id=i)["_source"] for i in good)
    )
    # A second run of the training set skips everything, writing nothing.
    again = submit(es, runs_index, item_index, Selection(SelectionKind.DATASET, dataset="drives"))
    make_worker().run(exit_when_idle=True)
    second = view_of(es, runs_index, again)
    assert (second["state"], second["items"]["skipped"], second["items"]["tagged"]) == (
        "done",
        10,
        0,
    )
    assert second["items"]["total"] == 14  # the 4 unreadable ones are tried again, and fail
    assert es.get(index=item_index, id=good[0])["_version"] == 2


def test_cancelling_stops_the_workers_and_frees_the_training_set(
    es: Elasticsearch,
    item_index: str,
    runs_index: str,
    scenes: list[dict[str, Any]],
    make_worker: MakeWorker,
) -> None:
    register(es, item_index, runs_index, scenes)
    run_id = submit(es, runs_index, item_index, Selection(SelectionKind.DATASET, dataset="drives"))
    worker = make_worker(run_batch_size=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while view_of(es, runs_index, run_id)["items"]["tagged"] == 0:
            assert time.monotonic() < deadline, "no batch finished"
            time.sleep(0.2)
        assert drive(es, r.cancel_run(runs_index, run_id)) == r.Cancelled(
            True, r.RunState.CANCELLED
        )
        time.sleep(3 * worker.settings.worker_poll_s + 2.5)  # a lease renewal sees it
        es.indices.refresh(index=runs_index)
        settled = view_of(es, runs_index, run_id)
        time.sleep(1.5)
        es.indices.refresh(index=runs_index)
        later = view_of(es, runs_index, run_id)
        assert later["state"] == "cancelled"
        assert later["items"]["tagged"] == settled["items"]["tagged"] < len(scenes)
        assert later["batches"]["claimed"] == 0
        # The training set is free for the next run, which finishes the job.
        rest = submit(
            es, runs_index, item_index, Selection(SelectionKind.DATASET, dataset="drives")
        )
        deadline = time.monotonic() + 180
        while view_of(es, runs_index, rest)["state"] != "done":
            assert time.monotonic() < deadline, "the next run did not finish"
            time.sleep(0.3)
        final = view_of(es, runs_index, rest)
        assert final["items"]["skipped"] + final["items"]["tagged"] == len(scenes)
        assert final["items"]["skipped"] >= later["items"]["tagged"]
    finally:
        worker.stop()
        thread.join(60)


def test_new_items_of_an_auto_tagged_dataset_are_tagged_by_themselves(
    es: Elasticsearch,
    item_index: str,
    runs_index: str,
    scenes: list[dict[str, Any]],
    make_worker: MakeWorker,
) -> None:
    drive(es, r.put_dataset_autotag(runs_index, DatasetAutotag("drives", DEMO_SET, "auto_v1")))
    worker = make_worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        for start in (0, 3):
            ids = register(es, item_index, runs_index, scenes[start : start + 3])
            deadline = time.monotonic() + 120
            while True:
                es.indices.refresh(index=item_index)
                tagged = es.count(
                    index=item_index,
                    query={
                        "bool": {
                            "filter": [
                                {"ids": {"values": ids}},
                                {"term": {f.TAGGED_BY: "auto_v1"}},
                            ]
                        }
                    },
                )["count"]
                if tagged == len(ids):
                    break
                assert time.monotonic() < deadline, "new items were not tagged"
                time.sleep(0.2)
    finally:
        worker.stop()
        thread.join(60)
    runs = drive(es, r.list_runs(runs_index))
    assert {run["origin"] for run in runs} == {"incremental"}
    assert all(run["state"] == "done" for run in runs)
    assert sum(run["items"]["tagged"] for run in runs) == 6


def test_models_that_cannot_be_loaded_fail_the_run_with_the_reason(
    es: Elasticsearch,
    item_index: str,
    runs_index: str,
    scenes: list[dict[str, Any]],
    make_worker: MakeWorker,
) -> None:
    register(es, item_index, runs_index, scenes[:2])
    # Checked at submission by the API; deleted from the worker's machine since.
    gone = ModelSet("gone", "ViT-B-32", "/models/deleted.bin")
    run_id = submit(
        es, runs_index, item_index, Selection(SelectionKind.DATASET, dataset="drives"), models=gone
    )
    make_worker().run(exit_when_idle=True)
    view = view_of(es, runs_index, run_id)
    assert view["state"] == "failed"
    assert "deleted.bin" in view["error"]
    assert view["items"]["tagged"] == 0
