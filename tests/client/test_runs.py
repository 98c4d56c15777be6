"""Runs through the client against a real server and node: register items, submit a run, watch
it to the end while a real worker (the shipped demo models, in a thread) executes it, cancel,
list, the model catalogue and dataset auto-tagging."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from client import AsyncClient, Client, Conflict, NotFound
from indexer.synthetic.dataset import MANIFEST_FILE, write_dataset
from tests.api.conftest import REVIEW_KEY
from worker.batch import ModelCache
from worker.loop import Worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.es

SCENES = 6


def searchable(autotag: Client, query: str, count: int) -> None:
    """Wait until a search counts ``count`` items for ``query`` (10 s at most)."""
    deadline = time.monotonic() + 10
    while (found := autotag.count(query).count) != count:
        assert time.monotonic() < deadline, (query, found)
        time.sleep(0.1)


def test_a_run_is_submitted_and_watched_to_the_end(
    autotag: Client, es_url: str, item_index: str, runs_index: str, tmp_path: Path
) -> None:
    write_dataset(tmp_path / "scenes", SCENES, seed=17, dataset="drives")
    rows = [json.loads(line) for line in (tmp_path / "scenes" / MANIFEST_FILE).open()]
    registered = autotag.register_items(
        [{"uri": row["uri"], "item_id": row["item_id"]} for row in rows], dataset="drives"
    )
    assert sorted(registered.created) == sorted(row["item_id"] for row in rows)
    # Registration does not refresh the index: a run planned at once could select none of
    # them, so wait until a search sees them (the next refresh, within a second).
    searchable(autotag, "dataset = drives", SCENES)

    run = autotag.submit_run("demo_v1", dataset="drives")
    assert (run.state, run.selection.dataset, run.models) == ("queued", "drives", "demo")
    settings = WorkerSettings(
        es_url=es_url,
        index=item_index,
        runs_index=runs_index,
        worker_device="cpu",
        worker_poll_s=0.1,
    )
    worker = Worker(settings, models=ModelCache("cpu", tmp_path / "cache"))
    thread = threading.Thread(target=worker.run, kwargs={"exit_when_idle": True}, daemon=True)
    thread.start()
    seen = list(autotag.watch_run(run.run_id, interval=0.1))
    thread.join(120)

    last = seen[-1]
    assert last.state == "done"
    assert (last.items.total, last.items.tagged, last.items.failed) == (SCENES, SCENES, 0)
    assert all(not s.state.finished for s in seen[:-1])
    done = [s.items.done for s in seen]
    assert done == sorted(done)
    assert last == autotag.run(run.run_id)
    # Nor do the worker's writes: searches see them at the next refresh.
    searchable(autotag, "tagged_by = demo_v1", SCENES)
    assert [r.run_id for r in autotag.runs(state="done").runs] == [run.run_id]


def test_a_queued_run_is_cancelled_once(autotag: Client) -> None:
    run = autotag.submit_run("v1", query="object_prefix:car")
    assert run.selection.query == "object_prefix:car"
    assert autotag.cancel_run(run.run_id).state == "cancelled"
    with pytest.raises(Conflict):
        autotag.cancel_run(run.run_id)
    assert [r.run_id for r in autotag.runs(state=["cancelled", "done"]).runs] == [run.run_id]
    assert autotag.runs(state="running").runs == []
    with pytest.raises(NotFound):
        autotag.run("run-nope")
    with pytest.raises(ValueError, match="one of query, dataset or uris"):
        autotag.submit_run("v1", query="object_prefix:car", dataset="d1")


def test_models_and_dataset_auto_tagging(autotag: Client) -> None:
    catalogue = {m.name: m for m in autotag.models().models}
    assert catalogue["demo"].available
    set_up = autotag.set_dataset_autotag("drives", training_set="demo_v1")
    assert (set_up.dataset, set_up.models, set_up.training_set) == ("drives", "demo", "demo_v1")
    assert autotag.dataset_autotag("drives").training_set == "demo_v1"
    autotag.stop_dataset_autotag("drives")
    with pytest.raises(NotFound):
        autotag.dataset_autotag("drives")


@pytest.mark.anyio
async def test_the_async_client_watches_a_run_until_it_finished(api_url: str) -> None:
    async with AsyncClient(api_url, api_key=REVIEW_KEY) as autotag:
        run = await autotag.submit_run("v1", uris=["/data/a.jpg"], dataset="new")
        assert run.selection.items == 1
        await autotag.cancel_run(run.run_id)
        seen = [snapshot async for snapshot in autotag.watch_run(run.run_id, interval=0.1)]
    assert [s.state for s in seen] == ["cancelled"]
