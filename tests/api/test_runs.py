"""Runs, registration, dataset auto-tagging and the model catalogue over HTTP, against a real
node: the answers, the checks made at submission, and the errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from store import runs as r
from store.calls import drive
from store.run_claims import RunStore
from tests.api.conftest import READ_KEY, REVIEW_KEY, client_for, error_of

pytestmark = [pytest.mark.es, pytest.mark.anyio]

WRITE = {"X-API-Key": REVIEW_KEY}


@pytest.fixture
def settings(es_url: str, item_index: str, runs_index: str, tmp_path: Path) -> Settings:
    here = tmp_path / "clip.bin"
    here.write_bytes(b"weights")
    models = tmp_path / "models.toml"
    models.write_text(
        f'[local]\nclip_model = "ViT-B-32"\nclip_weights = "{here}"\n\n'
        '[moved]\nclip_model = "ViT-B-32"\nclip_weights = "/models/gone.bin"\n'
    )
    return Settings(
        es_url=es_url,
        index=item_index,
        runs_index=runs_index,
        models_file=models,
        review_api_keys=SecretStr(f"alice:{REVIEW_KEY}"),
        read_api_keys=SecretStr(f"reader:{READ_KEY}"),
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(settings)) as client:
        yield client


async def _submit(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/runs", json={"training_set": "v1", **body}, headers=WRITE)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_a_submitted_run_is_queued_listed_and_read_back(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    run = await _submit(api, select={"dataset": "drives"})
    assert run["state"] == "queued"
    assert run["models"] == "demo"
    assert run["selection"] == {
        "kind": "dataset",
        "query": None,
        "dataset": "drives",
        "items": None,
    }
    assert run["items"]["total"] is None
    listed = (await api.get("/v1/runs")).json()["runs"]
    assert [x["run_id"] for x in listed] == [run["run_id"]]
    assert (await api.get("/v1/runs", params={"state": "done"})).json()["runs"] == []
    # Runs live in Elasticsearch: a new API process sees them.
    async with client_for(create_app(settings)) as again:
        read = await again.get(f"/v1/runs/{run['run_id']}")
    assert read.status_code == 200
    assert read.json()["run_id"] == run["run_id"]
    missing = await api.get("/v1/runs/run-nope")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "run_not_found"


async def test_submitting_needs_a_review_key(api: httpx.AsyncClient) -> None:
    body = {"select": {"dataset": "d"}, "training_set": "v1"}
    assert (await api.post("/v1/runs", json=body)).status_code == 401
    read_only = await api.post("/v1/runs", json=body, headers={"X-API-Key": READ_KEY})
    assert read_only.status_code == 403


async def test_unknown_models_are_refused_with_the_closest_names(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/runs",
        json={"select": {"dataset": "d"}, "training_set": "v1", "models": "locl"},
        headers=WRITE,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_models"
    assert error["details"]["closest"] == ["local"]
    assert error["details"]["known"] == ["demo", "local", "moved"]
    assert (await api.get("/v1/runs")).json()["runs"] == []  # nothing was queued


async def test_weights_that_cannot_be_had_are_a_400_at_submission(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/runs",
        json={"select": {"dataset": "d"}, "training_set": "v1", "models": "moved"},
        headers=WRITE,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "models_unavailable"
    assert error["details"]["problems"] == ["CLIP weights file not found: /models/gone.bin"]
    assert (await _submit(api, select={"dataset": "d"}, models="local"))["models"] == "local"
    catalogue = {m["name"]: m for m in (await api.get("/v1/models")).json()["models"]}
    assert (catalogue["demo"]["available"], catalogue["local"]["available"]) == (True, True)
    assert catalogue["moved"]["available"] is False
    assert catalogue["moved"]["problems"] == error["details"]["problems"]


async def test_a_query_run_stores_the_translation_the_read_endpoints_use(
    api: httpx.AsyncClient, es: Elasticsearch, settings: Settings
) -> None:
    query = 'object_prefix:car AND score < 0.5 AND dataset = "drives"'
    run = await _submit(api, select={"query": query})
    translated = (await api.post("/v1/translate", json={"query": query})).json()
    assert run["selection"]["query"] == translated["query"]
    stored = es.get(index=settings.runs_index, id=run["run_id"])["_source"]
    assert stored[r.SELECTION]["dsl"] == translated["dsl"]


async def test_a_bad_query_is_a_query_error_with_a_caret(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/runs", json={"select": {"query": "scor < 0.5"}, "training_set": "v1"}, headers=WRITE
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_query"
    assert "^^^^" in error["details"]["rendered"]


async def test_one_selection_per_run(api: httpx.AsyncClient) -> None:
    both = {"select": {"query": "score > 0", "dataset": "d"}, "training_set": "v1"}
    assert (await api.post("/v1/runs", json=both, headers=WRITE)).status_code == 422
    relative = {"select": {"uris": ["images/a.png"]}, "training_set": "v1"}
    assert (await api.post("/v1/runs", json=relative, headers=WRITE)).status_code == 422


async def test_a_run_over_new_uris_registers_them_and_an_empty_one_is_done_with_zero_items(
    api: httpx.AsyncClient, es: Elasticsearch, settings: Settings
) -> None:
    uris = ["file:///data/a.png", "/data/b.png", "/data/b.png"]
    run = await _submit(api, select={"uris": uris, "dataset": "uploads"})
    assert run["selection"] == {"kind": "items", "query": None, "dataset": "uploads", "items": 2}
    doc = es.get(index=settings.index, id="/data/b.png")["_source"]
    assert (doc["uri"], doc["dataset"]) == ("/data/b.png", "uploads")
    empty = await _submit(api, select={"uris": []}, training_set="other")
    store = RunStore(es, settings.runs_index)
    while store.plan_next() is not None:
        pass
    done = (await api.get(f"/v1/runs/{empty['run_id']}")).json()
    assert (done["state"], done["items"]["total"], done["items"]["done"]) == ("done", 0, 0)


async def test_cancelling_a_finished_run_is_a_409_with_its_state(api: httpx.AsyncClient) -> None:
    run = await _submit(api, select={"dataset": "d"})
    cancelled = await api.post(f"/v1/runs/{run['run_id']}/cancel", headers=WRITE)
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    again = await api.post(f"/v1/runs/{run['run_id']}/cancel", headers=WRITE)
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "run_finished"
    assert error["details"] == {"run_id": run["run_id"], "state": "cancelled"}
    missing = await api.post("/v1/runs/run-nope/cancel", headers=WRITE)
    assert missing.status_code == 404


async def test_a_done_run_cannot_be_cancelled(
    api: httpx.AsyncClient, es: Elasticsearch, settings: Settings
) -> None:
    run = await _submit(api, select={"dataset": "nothing"})
    RunStore(es, settings.runs_index).plan_next()  # an empty dataset: done at once
    response = await api.post(f"/v1/runs/{run['run_id']}/cancel", headers=WRITE)
    assert response.status_code == 409
    assert error_of(response)["details"]["state"] == "done"


async def test_registering_items_queues_tagging_for_auto_tagged_datasets(
    api: httpx.AsyncClient, es: Elasticsearch, settings: Settings
) -> None:
    missing = await api.get("/v1/datasets/cams/autotag")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "autotag_not_set"
    put = await api.put(
        "/v1/datasets/cams/autotag", json={"training_set": "auto_v1"}, headers=WRITE
    )
    assert put.status_code == 200, put.text
    assert put.json()["models"] == "demo"
    assert (await api.get("/v1/datasets/cams/autotag")).json()["training_set"] == "auto_v1"
    unknown = await api.put(
        "/v1/datasets/cams/autotag", json={"training_set": "x", "models": "nope"}, headers=WRITE
    )
    assert error_of(unknown)["code"] == "unknown_models"

    body = {
        "dataset": "cams",
        "items": [
            {"uri": "/cams/1.jpg", "metadata": {"camera": "front"}},
            {"uri": "/cams/2.jpg", "item_id": "cam-2", "uploaded_at": "2025-01-15T10:00:00Z"},
            {"uri": "/other/3.jpg", "dataset": "other"},
            {"uri": "/cams/long.jpg", "item_id": "x" * 600},
        ],
    }
    response = await api.post("/v1/items", json=body, headers=WRITE)
    assert response.status_code == 200, response.text
    registered = response.json()
    assert registered["created"] == ["/cams/1.jpg", "cam-2", "/other/3.jpg"]
    assert [f["item_id"] for f in registered["failed"]] == ["x" * 600]
    assert len(registered["runs"]) == 1
    run = (await api.get(f"/v1/runs/{registered['runs'][0]}")).json()
    assert (run["origin"], run["training_set"], run["selection"]["items"]) == (
        "incremental",
        "auto_v1",
        2,
    )
    assert es.get(index=settings.index, id="cam-2")["_source"]["uploaded_at"] == (
        "2025-01-15T10:00:00.000Z"
    )
    again = (await api.post("/v1/items", json=body, headers=WRITE)).json()
    assert again["existing"] == ["/cams/1.jpg", "cam-2", "/other/3.jpg"]
    assert again["runs"] == []  # nothing new to tag
    assert (await api.delete("/v1/datasets/cams/autotag", headers=WRITE)).status_code == 204
    assert (await api.delete("/v1/datasets/cams/autotag", headers=WRITE)).status_code == 404


async def test_values_no_document_can_hold_are_refused_with_their_place(
    api: httpx.AsyncClient,
) -> None:
    item = {"uri": "/a.jpg", "metadata": {"n": 2**70}}
    response = await api.post("/v1/items", json={"items": [item]}, headers=WRITE)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_value"
    assert error["details"]["loc"] == ["body", "items", 0, "metadata", "n"]
    # A lone surrogate (JSON's "\\ud800" escape) is refused by the body's parser already.
    body = json.dumps({"items": [{"uri": "/a\ud800.jpg"}]}, ensure_ascii=True)
    headers = {**WRITE, "content-type": "application/json"}
    response = await api.post("/v1/items", content=body, headers=headers)
    assert response.status_code == 422


async def test_progress_of_a_planned_run(
    api: httpx.AsyncClient, es: Elasticsearch, settings: Settings
) -> None:
    drive(
        es,
        r.register_items(
            settings.index,
            settings.runs_index,
            [r.NewItem(f"d/{i}", f"/d/{i}.png", "d") for i in range(5)],
        ),
    )
    es.indices.refresh(index=settings.index)
    run = await _submit(api, select={"dataset": "d"})
    store = RunStore(es, settings.runs_index, batch_size=2)
    store.plan_next()
    claim = store.claim()
    assert claim is not None
    failure = {"item_id": claim.item_ids[0], "uri": None, "stage": "decode", "reason": "bad"}
    store.finish(claim, tagged=1, failures=[failure], predictions=7)
    es.indices.refresh(index=settings.runs_index)
    view = (await api.get(f"/v1/runs/{run['run_id']}")).json()
    assert view["state"] == "running"
    assert view["items"] == {
        "total": 5,
        "done": 2,
        "tagged": 1,
        "skipped": 0,
        "failed": 1,
        "in_progress": 0,
        "predictions": 7,
    }
    assert view["batches"] == {"total": 3, "pending": 2, "claimed": 0, "done": 1}
    assert view["failures"] == [failure]
    assert view["rate"] > 0
    assert view["eta_seconds"] >= 0
