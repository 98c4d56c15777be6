"""The run store against a real node: submit, plan, claim under leases, finish, cancel, locks,
registration and incremental runs. No models run here (see tests/worker for that)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from store import runs as r
from store import schema as f
from store.calls import drive
from store.model_choice import DEMO_SET
from store.run_claims import RunStore
from store.runs import (
    BatchState,
    DatasetAutotag,
    NewItem,
    Origin,
    RunState,
    Selection,
    SelectionKind,
)

pytestmark = pytest.mark.es


def _items(es: Elasticsearch, index: str, runs_index: str, n: int, dataset: str = "d") -> list[str]:
    new = [NewItem(f"{dataset}/{i:04d}", f"/data/{dataset}/{i:04d}.png", dataset) for i in range(n)]
    done = drive(es, r.register_items(index, runs_index, new))
    assert len(done.created) == n
    es.indices.refresh(index=index)
    return [item.item_id for item in new]


def _submit(
    es: Elasticsearch,
    runs_index: str,
    item_index: str,
    selection: Selection,
    training_set: str = "ts",
) -> str:
    run = r.new_run(
        selection=selection, models=DEMO_SET, training_set=training_set, items_index=item_index
    )
    drive(es, r.submit_run(runs_index, run))
    return str(run[r.RUN_ID])


def _view(es: Elasticsearch, runs_index: str, run_id: str) -> dict[str, Any]:
    view = drive(es, r.get_run(runs_index, run_id))
    assert view is not None
    return view


def _dataset(name: str = "d") -> Selection:
    return Selection(SelectionKind.DATASET, dataset=name)


def _mark_tagged(es: Elasticsearch, index: str, item_ids: list[str], training_set: str) -> None:
    for item_id in item_ids:
        doc = es.get(index=index, id=item_id)["_source"]
        doc[f.TAGGED_BY] = [training_set]
        es.index(index=index, id=item_id, document=doc)
    es.indices.refresh(index=index)


def test_a_run_is_stored_read_listed_and_cancelled(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    run_id = _submit(es, runs_index, item_index, _dataset())
    view = _view(es, runs_index, run_id)
    assert view["state"] == "queued"
    assert view["items"]["total"] is None  # not planned yet
    assert view["selection"] == {"kind": "dataset", "dataset": "d"}
    assert [v["run_id"] for v in drive(es, r.list_runs(runs_index))] == [run_id]
    assert drive(es, r.list_runs(runs_index, states=[RunState.DONE])) == []

    first = drive(es, r.cancel_run(runs_index, run_id))
    assert first == r.Cancelled(True, RunState.CANCELLED)
    again = drive(es, r.cancel_run(runs_index, run_id))
    assert again == r.Cancelled(False, RunState.CANCELLED)  # the API answers 409
    assert _view(es, runs_index, run_id)["finished_at"] is not None
    assert drive(es, r.cancel_run(runs_index, "run-nope")) is None
    assert drive(es, r.get_run(runs_index, "run-nope")) is None


def test_reading_runs_before_any_was_submitted(es: Elasticsearch, runs_index: str) -> None:
    assert drive(es, r.list_runs(runs_index)) == []
    assert drive(es, r.get_run(runs_index, "run-x")) is None


def test_planning_skips_what_the_training_set_tagged_and_batches_the_rest(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    ids = _items(es, item_index, runs_index, 23)
    _mark_tagged(es, item_index, ids[:3], "ts")
    _mark_tagged(es, item_index, ids[3:5], "other")  # another training set's: still to do
    run_id = _submit(es, runs_index, item_index, _dataset())
    store = RunStore(es, runs_index, batch_size=5)
    planned = store.plan_next()
    assert planned is not None
    assert (planned.run_id, planned.total, planned.skipped, planned.batches) == (run_id, 23, 3, 4)
    view = _view(es, runs_index, run_id)
    assert view["state"] == "running"
    assert view["items"] == {
        "total": 23,
        "done": 3,
        "tagged": 0,
        "skipped": 3,
        "failed": 0,
        "in_progress": 0,
        "predictions": 0,
    }
    assert view["batches"] == {"total": 4, "pending": 4, "claimed": 0, "done": 0}
    plan = _run(es, runs_index, run_id)[r.PLAN_KEY]
    batches = es.search(index=runs_index, query=r.plan_batches(plan))["hits"]["hits"]
    listed = sorted(i for hit in batches for i in hit["_source"][r.ITEM_IDS])
    assert listed == sorted(ids[3:])  # every item to do, once


def test_items_registered_a_moment_ago_are_planned_not_lost(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    # No periodic refresh: only an explicit one makes a write searchable, as it would be in
    # the second after an upload.
    es.indices.put_settings(index=item_index, settings={"refresh_interval": "-1"})
    setting = DatasetAutotag("uploads", DEMO_SET, "auto_v1")
    drive(es, r.put_dataset_autotag(runs_index, setting))
    new = [NewItem(f"up/{i}", f"/data/up/{i}.png", "uploads") for i in range(3)]
    registered = drive(es, r.register_items(item_index, runs_index, new))
    assert len(registered.created) == 3
    assert len(registered.runs) == 1
    planned = RunStore(es, runs_index).plan_next()
    assert planned is not None
    assert (planned.run_id, planned.total, planned.skipped) == (registered.runs[0], 3, 0)


def _run(es: Elasticsearch, runs_index: str, run_id: str) -> dict[str, Any]:
    source: dict[str, Any] = es.get(index=runs_index, id=run_id)["_source"]
    return source


def test_an_empty_selection_is_done_with_zero_items(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    _items(es, item_index, runs_index, 2)
    run_id = _submit(es, runs_index, item_index, _dataset("nothing-here"))
    store = RunStore(es, runs_index)
    planned = store.plan_next()
    assert planned is not None
    assert planned.state is RunState.DONE
    view = _view(es, runs_index, run_id)
    assert (view["state"], view["items"]["total"], view["batches"]["total"]) == ("done", 0, 0)
    # and the training set is free at once
    assert store.acquire_lock("ts", "run-next")


def test_a_query_the_items_index_refuses_fails_the_run(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    bad = Selection(SelectionKind.QUERY, query="x", dsl={"no_such_query": {}})
    run_id = _submit(es, runs_index, item_index, bad)
    RunStore(es, runs_index).plan_next()
    view = _view(es, runs_index, run_id)
    assert view["state"] == "failed"
    assert "cannot be read" in view["error"]


def test_two_runs_of_one_training_set_run_one_after_the_other(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    _items(es, item_index, runs_index, 4, dataset="a")
    _items(es, item_index, runs_index, 4, dataset="b")
    first = _submit(es, runs_index, item_index, _dataset("a"))
    second = _submit(es, runs_index, item_index, _dataset("b"))
    other = _submit(es, runs_index, item_index, _dataset("b"), training_set="ts2")
    store = RunStore(es, runs_index, batch_size=10)
    assert store.plan_next().run_id == first  # type: ignore[union-attr]
    # the second waits for the lock; a run of another training set does not
    assert store.plan_next().run_id == other  # type: ignore[union-attr]
    assert store.plan_next() is None
    assert _view(es, runs_index, second)["state"] == "queued"
    claim = store.claim()
    while claim is not None and claim.run_id != first:
        assert store.finish(claim, tagged=len(claim.item_ids), failures=[], predictions=0)
        claim = store.claim()
    assert claim is not None
    assert store.finish(claim, tagged=4, failures=[], predictions=0)
    assert store.finish_if_complete(first)
    assert store.plan_next().run_id == second  # type: ignore[union-attr]


def test_a_batch_whose_lease_expired_is_taken_over_and_the_old_holder_cannot_finish_it(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    _items(es, item_index, runs_index, 3)
    run_id = _submit(es, runs_index, item_index, _dataset())
    a = RunStore(es, runs_index, owner="a", lease_ms=1000, batch_size=10)
    b = RunStore(es, runs_index, owner="b", lease_ms=1000, batch_size=10)
    a.plan_next()
    held = a.claim()
    assert held is not None
    assert b.claim() is None  # the only batch is a's
    assert a.renew(held, in_progress=1)
    es.indices.refresh(index=runs_index)  # views read batches by search: refreshed each second
    assert _view(es, runs_index, run_id)["workers"] == ["a"]
    time.sleep(1.2)
    es.indices.refresh(index=runs_index)
    taken = b.claim()
    assert taken is not None
    assert taken.batch_id == held.batch_id
    assert taken.doc[r.ATTEMPTS] == 2
    assert not a.renew(held, in_progress=2)
    assert not a.finish(held, tagged=3, failures=[], predictions=9)
    assert b.finish(taken, tagged=3, failures=[], predictions=9)
    assert b.finish_if_complete(run_id)
    view = _view(es, runs_index, run_id)
    assert (view["state"], view["items"]["tagged"], view["items"]["predictions"]) == ("done", 3, 9)


def test_a_cancelled_run_frees_its_training_set_once_its_batches_let_go(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    _items(es, item_index, runs_index, 4)
    first = _submit(es, runs_index, item_index, _dataset())
    store = RunStore(es, runs_index, batch_size=2)
    store.plan_next()
    held = store.claim()
    assert held is not None
    drive(es, r.cancel_run(runs_index, first))
    assert store.claim() is None  # no batch of a cancelled run is handed out
    second = _submit(es, runs_index, item_index, _dataset())
    assert store.plan_next() is None  # a batch of the cancelled run is still held
    store.release(held)
    planned = store.plan_next()
    assert planned is not None
    assert planned.run_id == second


def test_a_run_whose_finisher_died_is_finished_by_any_worker(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    _items(es, item_index, runs_index, 2)
    run_id = _submit(es, runs_index, item_index, _dataset())
    store = RunStore(es, runs_index)
    store.plan_next()
    claim = store.claim()
    assert claim is not None
    assert store.finish(claim, tagged=1, failures=[_failure("d/0001")], predictions=4)
    assert _view(es, runs_index, run_id)["state"] == "running"  # nobody finished the run
    assert store.finish_complete_runs() == 1
    view = _view(es, runs_index, run_id)
    assert view["state"] == "done"
    assert view["items"]["failed"] == 1
    assert view["failures"] == [_failure("d/0001")]
    assert view["rate"] is not None
    assert view["eta_seconds"] is None
    assert store.acquire_lock("ts", "run-later")


def _failure(item_id: str) -> dict[str, Any]:
    return {"item_id": item_id, "uri": None, "stage": "decode", "reason": "not an image"}


def test_a_planner_that_died_is_replaced_and_its_plan_dropped(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    _items(es, item_index, runs_index, 4)
    run_id = _submit(es, runs_index, item_index, _dataset())
    dead = RunStore(es, runs_index, owner="dead", lease_ms=1000, batch_size=2)
    planned = dead.plan_next()
    assert planned is not None
    # Make it look as if the planner died before recording the plan.
    run = _run(es, runs_index, run_id)
    run.update({r.PLANNED: False, r.LEASE_UNTIL: r.now_ms() - 1})
    es.index(index=runs_index, id=run_id, document=run, refresh=True)
    old_plan = run[r.PLAN_KEY]
    replanned = RunStore(es, runs_index, owner="new", batch_size=2).plan_next()
    assert replanned is not None
    assert replanned.run_id == run_id
    es.indices.refresh(index=runs_index)
    assert es.count(index=runs_index, query=r.plan_batches(old_plan))["count"] == 0
    assert _view(es, runs_index, run_id)["batches"]["total"] == 2


def test_registration_keeps_existing_items_and_queues_incremental_runs(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    setting = DatasetAutotag("cams", DEMO_SET, "auto_v1")
    drive(es, r.put_dataset_autotag(runs_index, setting))
    first = drive(
        es,
        r.register_items(
            item_index,
            runs_index,
            [NewItem("cams/1", "/x/1.png", "cams"), NewItem("other/1", "/x/o.png", "other")],
        ),
    )
    assert (first.created, first.existing) == (["cams/1", "other/1"], [])
    assert len(first.runs) == 1  # only "cams" is auto-tagged
    # While the run waits, new items join it rather than making a run per upload.
    second = drive(
        es,
        r.register_items(
            item_index,
            runs_index,
            [NewItem("cams/1", "/x/changed.png", "cams"), NewItem("cams/2", "/x/2.png", "cams")],
        ),
    )
    assert (second.created, second.existing, second.runs) == (["cams/2"], ["cams/1"], first.runs)
    assert es.get(index=item_index, id="cams/1")["_source"][f.URI] == "/x/1.png"  # untouched
    run = _run(es, runs_index, first.runs[0])
    assert run[r.ORIGIN] == Origin.INCREMENTAL.value
    assert run[r.SELECTION][r.ITEM_IDS] == ["cams/1", "cams/2"]
    # Once a worker started it, the next items make a new run.
    RunStore(es, runs_index).plan_next()
    third = drive(
        es, r.register_items(item_index, runs_index, [NewItem("cams/3", "/x/3.png", "cams")])
    )
    assert third.runs
    assert third.runs != first.runs
    assert drive(es, r.delete_dataset_autotag(runs_index, "cams"))
    fourth = drive(
        es, r.register_items(item_index, runs_index, [NewItem("cams/4", "/x/4.png", "cams")])
    )
    assert fourth.runs == []


def test_registration_reports_items_the_index_refuses(
    es: Elasticsearch, runs_index: str, item_index: str
) -> None:
    done = drive(
        es,
        r.register_items(
            item_index,
            runs_index,
            [
                NewItem("a", "/a.png", metadata={"n": 1}),
                NewItem("b", "/b.png", metadata={"n": {"nested": "object"}}),
            ],
        ),
    )
    assert done.created == ["a"]
    assert [item_id for item_id, _ in done.failed] == ["b"]


def test_run_view_counts_rate_and_eta() -> None:
    run = r.new_run(selection=_dataset(), models=DEMO_SET, training_set="ts", items_index="items")
    run.update({r.STATE: "running", r.PLANNED: True, r.TOTAL: 100, r.SKIPPED: 10, r.BATCHES: 3})
    aggs = {
        "states": {
            "buckets": [{"key": "done", "doc_count": 1}, {"key": "claimed", "doc_count": 1}]
        },
        "done": {"tagged": {"value": 28}, "failed": {"value": 2}, "predictions": {"value": 300}},
        "live": {"in_progress": {"value": 10}, "workers": {"buckets": [{"key": "w1"}]}},
        "first_claim": {"value": 1_000_000},
    }
    view = r.run_view(run, aggs, now=1_000_000 + 20_000)
    assert view["items"]["done"] == 10 + 28 + 2
    assert view["rate"] == pytest.approx((28 + 2 + 10) / 20)
    assert view["eta_seconds"] == pytest.approx((100 - 40 - 10) / 2)
    assert view["batches"] == {"total": 3, "pending": 0, "claimed": 1, "done": 1}
    assert view["workers"] == ["w1"]
    assert BatchState.DONE.value in view["batches"]
