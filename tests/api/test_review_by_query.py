"""Review by query: the dry run counts exactly what a run then changes, once, whatever happens.

The reference for "the pending predictions a query matched" is the search endpoint itself:
every page of ``/v1/search``, its ``matched_predictions``, filtered to pending in the source.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import AsyncElasticsearch, Elasticsearch

from api import bulk_review
from api.models import ReviewAction
from api.query import parse_query
from store.documents import prepare_item
from tests.api.conftest import BOX, READ_KEY, REVIEW_KEY, error_of, pred, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]

ALICE = {"X-API-Key": REVIEW_KEY}
QUERY = "object_prefix:car AND score >= 0.5"
HERE = Path(__file__).resolve().parent


def catalogue(n: int, seed_: int = 5) -> list[dict[str, Any]]:
    """Items with cars (some pending, some reviewed), other objects and image tags."""
    rng = random.Random(seed_)
    items = []
    for i in range(n):
        objects = []
        for j in range(rng.randint(0, 5)):
            label = rng.choice(["car", "car_suv", "cargo_ship", "pedestrian"])
            status = rng.choice(["pending"] * 4 + ["accepted", "rejected", "modified"])
            extra: dict[str, Any] = {"status": status, "bbox": BOX}
            if status == "modified":
                extra["original_label"] = "truck"
            objects.append(pred(f"o{i}-{j}", label, round(rng.uniform(-1, 1), 3), **extra))
        images = [pred(f"w{i}", "weather_clear", round(rng.uniform(-1, 1), 3))]
        items.append(
            {
                "item_id": f"item-{i:05d}",
                "dataset": rng.choice(["d1", "d2"]),
                "image_predictions": images,
                "object_predictions": objects,
            }
        )
    return items


async def reference(client: httpx.AsyncClient, query: str) -> set[tuple[str, str]]:
    """(item, prediction) of every pending prediction search says the query matched."""
    found: set[tuple[str, str]] = set()
    cursor = None
    while True:
        body: dict[str, Any] = {"query": query, "size": 200, "sort": "item_id"}
        if cursor:
            body["cursor"] = cursor
        page = (await client.post("/v1/search", json=body)).json()
        for hit in page["hits"]:
            item = hit["item"]
            for m in hit["matched_predictions"]:
                prediction = item[f"{m['kind']}_predictions"][m["offset"]]
                if prediction["status"] == "pending":
                    found.add((item["item_id"], prediction["id"]))
        cursor = page["next_cursor"]
        if not cursor:
            return found


def statuses(es: Elasticsearch, index: str) -> dict[tuple[str, str], str]:
    es.indices.refresh(index=index)
    out = {}
    for hit in es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]:
        source = hit["_source"]
        for path in ("image_predictions", "object_predictions"):
            for p in source.get(path) or ():
                out[source["item_id"], p["id"]] = p["status"]
    return out


def history(es: Elasticsearch, index: str) -> list[tuple[str, dict[str, Any]]]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return [
        (h["_source"]["item_id"], e) for h in hits for e in h["_source"].get("review_history") or ()
    ]


@pytest.fixture
def many(es: Elasticsearch, item_index: str) -> str:
    seed(es, item_index, catalogue(300))
    return item_index


@pytest.mark.parametrize(
    "query",
    [
        QUERY,
        "object_prefix:car",
        "object_prefix:car OR image_prefix:weather_clear AND score > 0.5",
        '(object_prefix:car AND score < 0) OR (object_prefix:pedestrian AND dataset = "d1")',
        "score >= 0.9",
        'dataset = "d1"',
        "NOT object_prefix:car",
    ],
)
async def test_the_dry_run_counts_what_search_matched(
    client: httpx.AsyncClient, many: str, query: str
) -> None:
    expected = await reference(client, query)
    answer = await client.post("/v1/review-by-query/preview", json={"query": query})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == len(expected)
    assert body["items"] == len({item for item, _ in expected})
    assert body["image_predictions"] + body["object_predictions"] == body["predictions"]


async def test_a_run_changes_exactly_the_dry_run_and_writes_history(
    client: httpx.AsyncClient, many: str, es: Elasticsearch
) -> None:
    expected = await reference(client, QUERY)
    assert len(expected) > 50
    dry = (await client.post("/v1/review-by-query/preview", json={"query": QUERY})).json()
    before = statuses(es, many)
    run = await client.post(
        "/v1/review-by-query",
        json={"query": QUERY, "action": "accept", "expected_predictions": dry["predictions"]},
        headers=ALICE,
    )
    assert run.status_code == 200, run.text
    result = run.json()
    assert (result["predictions"], result["items"]) == (dry["predictions"], dry["items"])
    after = statuses(es, many)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == expected
    assert {after[key] for key in changed} == {"accepted"}
    entries = history(es, many)
    assert len(entries) == len(expected)
    assert {(item, e["prediction_id"]) for item, e in entries} == expected
    assert {e["run_id"] for _, e in entries} == {result["run_id"]}
    assert {e["who"] for _, e in entries} == {"alice"}
    # Searches see it at once, and there is nothing left to do.
    again = (await client.post("/v1/review-by-query/preview", json={"query": QUERY})).json()
    assert again["predictions"] == 0
    # Idempotent: a second run changes nothing.
    rerun = await client.post(
        "/v1/review-by-query", json={"query": QUERY, "action": "accept"}, headers=ALICE
    )
    assert rerun.json()["predictions"] == 0
    assert statuses(es, many) == after


async def test_reject_by_query_leaves_reviewed_predictions_alone(
    client: httpx.AsyncClient, many: str, es: Elasticsearch
) -> None:
    before = statuses(es, many)
    run = await client.post(
        "/v1/review-by-query",
        json={"query": "object_prefix:car", "action": "reject"},
        headers=ALICE,
    )
    assert run.status_code == 200
    after = statuses(es, many)
    for key, status in before.items():
        if status != "pending":
            assert after[key] == status, key  # accepted, modified, rejected: untouched
        elif after[key] != status:
            assert after[key] == "rejected"


async def test_a_changed_matched_set_applies_nothing(
    client: httpx.AsyncClient, many: str, es: Elasticsearch
) -> None:
    dry = (await client.post("/v1/review-by-query/preview", json={"query": QUERY})).json()
    before = statuses(es, many)
    run = await client.post(
        "/v1/review-by-query",
        json={"query": QUERY, "action": "accept", "expected_predictions": dry["predictions"] + 1},
        headers=ALICE,
    )
    assert run.status_code == 409
    assert error_of(run)["details"] == {
        "expected_predictions": dry["predictions"] + 1,
        "predictions": dry["predictions"],
    }
    assert statuses(es, many) == before


async def test_runs_need_a_review_key_and_a_valid_action(
    client: httpx.AsyncClient, many: str
) -> None:
    body = {"query": QUERY, "action": "accept"}
    assert (await client.post("/v1/review-by-query", json=body)).status_code == 401
    read_only = {"X-API-Key": READ_KEY}
    assert (
        await client.post("/v1/review-by-query", json=body, headers=read_only)
    ).status_code == 403
    modify = {"query": QUERY, "action": "modify"}
    assert (await client.post("/v1/review-by-query", json=modify, headers=ALICE)).status_code == 422
    bad = await client.post(
        "/v1/review-by-query", json={"query": "scor > 1", "action": "accept"}, headers=ALICE
    )
    assert error_of(bad)["code"] == "invalid_query"


async def test_concurrent_runs_apply_each_prediction_once(
    client: httpx.AsyncClient, many: str, es: Elasticsearch
) -> None:
    expected = await reference(client, QUERY)
    runs = await asyncio.gather(
        *[
            client.post(
                "/v1/review-by-query",
                json={"query": QUERY, "action": "accept", "run_id": f"run-{n}"},
                headers=ALICE,
            )
            for n in range(3)
        ]
    )
    assert [r.status_code for r in runs] == [200, 200, 200]
    assert sum(r.json()["predictions"] for r in runs) == len(expected)
    entries = history(es, many)
    per_prediction = Counter((item, e["prediction_id"]) for item, e in entries)
    assert set(per_prediction) == expected
    assert set(per_prediction.values()) == {1}


async def test_a_write_racing_the_run_is_retried_on_the_new_state(
    es_url: str, es: Elasticsearch, many: str, client: httpx.AsyncClient
) -> None:
    """Between the run's read and its conditional write, someone rejects one matched car: the
    run's write of that item fails (409), is re-read next sweep, and the rejection stands."""
    expected = await reference(client, QUERY)
    item_id, prediction_id = min(expected)
    parsed = parse_query(QUERY, 4096)
    async with AsyncElasticsearch(es_url) as aes:
        bulk = aes.bulk
        raced = False

        async def bulk_after_a_rival_write(**kwargs: Any) -> Any:
            nonlocal raced
            if not raced:
                raced = True
                source = es.get(index=many, id=item_id)["_source"]
                for p in source["object_predictions"]:
                    if p["id"] == prediction_id:
                        p["status"] = "rejected"
                es.index(index=many, id=item_id, document=prepare_item(source))
            return await bulk(**kwargs)

        aes.bulk = bulk_after_a_rival_write  # type: ignore[method-assign]
        result = await bulk_review.apply(
            aes,
            many,
            parsed.query,
            parsed.hits_query,
            action=ReviewAction.ACCEPT,
            who="t",
            api_key="t",
            run_id="race",
        )
    assert result.conflicts == 1
    assert result.sweeps >= 2
    assert result.predictions == len(expected) - 1
    after = statuses(es, many)
    assert after[item_id, prediction_id] == "rejected"
    assert all(after[key] == "accepted" for key in expected - {(item_id, prediction_id)})


async def test_a_run_killed_half_way_finishes_on_rerun_without_doubles(
    es_url: str, es: Elasticsearch, item_index: str, client: httpx.AsyncClient
) -> None:
    seed(es, item_index, catalogue(1500, seed_=9))
    expected = await reference(client, QUERY)
    dry = (await client.post("/v1/review-by-query/preview", json={"query": QUERY})).json()
    assert dry["predictions"] == len(expected)
    env = {**os.environ, "AUTOTAG_ES_URL": es_url, "AUTOTAG_INDEX": item_index}
    process = subprocess.Popen(
        [sys.executable, str(HERE / "bulk_review_process.py"), QUERY, "killed-run", "20"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    pages = 0
    for line in process.stdout:
        if line.startswith("bulk"):
            pages += 1
            if pages == 4:
                process.send_signal(signal.SIGKILL)
                break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    half = [e for _, e in history(es, item_index)]
    assert 0 < len(half) < len(expected), "the run was not cut half way"

    rerun = await client.post(
        "/v1/review-by-query",
        json={"query": QUERY, "action": "accept", "run_id": "killed-run"},
        headers=ALICE,
    )
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["predictions"] == len(expected) - len(half)
    entries = history(es, item_index)
    per_prediction = Counter((item, e["prediction_id"]) for item, e in entries)
    assert set(per_prediction) == expected  # exactly the dry run's predictions...
    assert set(per_prediction.values()) == {1}  # ...each once
    assert {e["run_id"] for _, e in entries} == {"killed-run"}
    after = statuses(es, item_index)
    assert all(after[key] == "accepted" for key in expected)


def test_matched_clauses_are_the_inner_hit_clauses() -> None:
    parsed = parse_query("object_prefix:car AND NOT object_prefix:ship OR image_prefix:x", 4096)
    clauses = bulk_review.matched_clauses(parsed.hits_query)
    assert sorted(clauses) == ["image_predictions", "object_predictions"]
    assert len(clauses["object_predictions"]) == 1  # the negated clause matched nothing
