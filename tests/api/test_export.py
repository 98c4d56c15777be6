"""POST /v1/export against the real app and node: the stream, its statement, its errors."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from store.slices import slices_index
from tests.api.conftest import READ_KEY, REVIEW_KEY, client_for, error_of

pytestmark = [pytest.mark.es, pytest.mark.anyio]


@pytest.fixture(autouse=True)
def _drop_slices(es: Elasticsearch, item_index: str) -> Iterator[None]:
    yield
    es.indices.delete(index=slices_index(item_index), ignore_unavailable=True)


async def test_jsonl_export_streams_items_and_states_its_content(
    client: httpx.AsyncClient, seeded: str
) -> None:
    response = await client.post(
        "/v1/export", json={"query": "object_prefix:car", "format": "jsonl", "content": "reviewed"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert 'filename="autotag-export-jsonl.jsonl"' in response.headers["content-disposition"]
    statement = json.loads(response.headers["x-autotag-export"])
    assert statement["content"] == "reviewed"
    assert statement["query"] == "object_prefix:car"
    # No prediction of the seeded items is reviewed: nothing to train on.
    assert response.text == ""

    everything = await client.post(
        "/v1/export", json={"query": "object_prefix:car", "format": "jsonl"}
    )
    lines = [json.loads(line) for line in everything.text.splitlines()]
    # i4's only car is rejected: not a match.
    assert [line["item_id"] for line in lines] == ["i1", "i2", "i3"]


async def test_coco_and_yolo_exports_are_zip_bundles(
    client: httpx.AsyncClient, seeded: str
) -> None:
    for fmt, member in (("coco", "annotations.json"), ("yolo", "classes.txt")):
        response = await client.post(
            "/v1/export",
            json={"query": "dataset = d1", "format": fmt, "sample": {"strategy": "random", "n": 1}},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        assert member in archive.namelist()
        manifest = json.loads(archive.read("export.json"))
        assert manifest["sampling"] == {"strategy": "random", "n": 1, "seed": 0}
        assert manifest["format"] == fmt


async def test_an_export_of_a_slice_says_which_slices(
    client: httpx.AsyncClient, seeded: str
) -> None:
    saved = await client.put(
        "/v1/slices/cars", json={"query": "object_prefix:car"}, headers={"X-API-Key": REVIEW_KEY}
    )
    assert saved.status_code == 200
    response = await client.post(
        "/v1/export",
        json={
            "query": "slice = cars AND score >= 0.8",
            "format": "jsonl",
            "sample": {"strategy": "uncertain", "n": 5},
        },
    )
    statement = json.loads(response.headers["x-autotag-export"])
    assert statement["query"] == "object_prefix:car AND score >= 0.8"
    assert statement["slices"] == {"cars": "object_prefix:car"}
    assert [json.loads(line)["item_id"] for line in response.text.splitlines()] == ["i1"]


async def test_errors_come_before_the_stream(client: httpx.AsyncClient, seeded: str) -> None:
    bad = await client.post("/v1/export", json={"query": "scor > 1", "format": "jsonl"})
    assert bad.status_code == 400
    assert error_of(bad)["details"]["reason"] == "unknown_field"
    no_n = await client.post(
        "/v1/export",
        json={"query": "dataset = d1", "format": "coco", "sample": {"strategy": "uncertain"}},
    )
    assert no_n.status_code == 422
    unknown_format = await client.post(
        "/v1/export", json={"query": "dataset = d1", "format": "voc"}
    )
    assert unknown_format.status_code == 422


async def test_export_follows_read_rules(api_settings: Settings, seeded: str) -> None:
    closed = api_settings.model_copy(
        update={"open_reads": False, "read_api_keys": SecretStr(f"reader:{READ_KEY}")}
    )
    async with client_for(create_app(closed)) as client:
        body = {"query": "dataset = d1", "format": "jsonl"}
        assert (await client.post("/v1/export", json=body)).status_code == 401
        allowed = await client.post("/v1/export", json=body, headers={"X-API-Key": READ_KEY})
        assert allowed.status_code == 200
        assert len(allowed.text.splitlines()) == 2


@pytest.mark.parametrize(
    "query", ["object_prefix:car", "object_prefix:car OR image_prefix:weather AND score > 0.5"]
)
async def test_uncertain_reads_the_predictions_search_reports_as_matched(
    client: httpx.AsyncClient, seeded: str, query: str
) -> None:
    """The reference: ``matched_predictions`` of /v1/search (its inner hits), nearest 0 first."""
    found = (await client.post("/v1/search", json={"query": query, "size": 100})).json()
    margins = []
    for hit in found["hits"]:
        item = hit["item"]
        scores = [
            abs(item[f"{m['kind']}_predictions"][m["offset"]]["score"])
            for m in hit["matched_predictions"]
        ]
        margins.append((min(scores), item["item_id"]))
    exported = await client.post(
        "/v1/export",
        json={"query": query, "format": "jsonl", "sample": {"strategy": "uncertain", "n": 100}},
    )
    ids = [json.loads(line)["item_id"] for line in exported.text.splitlines()]
    assert len(ids) >= 3
    assert ids == [item_id for _, item_id in sorted(margins)]
