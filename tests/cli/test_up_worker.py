"""`autotag up` runs one worker beside the API: a child process that executes runs, and stops
cleanly (SIGTERM: exit status 0) when `up` exits."""

from __future__ import annotations

import time

import pytest
from elasticsearch import Elasticsearch

from api.run_models import DatasetSelection, RunRequest
from cli.up import RUN_EXAMPLE, SAMPLE_DATASET, start_worker, stop_worker
from store import runs as r
from store.calls import drive
from store.model_choice import DEMO_SET
from store.runs import Selection, SelectionKind

pytestmark = pytest.mark.es


def test_the_main_jobs_worker_executes_runs_and_stops_cleanly(
    es: Elasticsearch,
    es_url: str,
    item_index: str,
    runs_index: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    monkeypatch.setenv("AUTOTAG_RUNS_INDEX", runs_index)
    run = r.new_run(
        selection=Selection(SelectionKind.DATASET, dataset="nothing"),
        models=DEMO_SET,
        training_set="t",
        items_index=item_index,
    )
    drive(es, r.submit_run(runs_index, run))
    worker = start_worker([es_url])
    try:
        deadline = time.monotonic() + 120
        while (view := drive(es, r.get_run(runs_index, run[r.RUN_ID]))) is None or view[
            "state"
        ] != "done":
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker did not take the run"
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    assert worker.returncode == 0


def test_the_run_the_main_job_suggests_is_a_valid_request() -> None:
    request = RunRequest.model_validate_json(RUN_EXAMPLE)
    assert isinstance(request.select, DatasetSelection)
    assert request.select.dataset == SAMPLE_DATASET
