"""``/metrics``: scraped after a known sequence of requests, with exact counts.

The scrape is parsed with the official client's own parser; every figure asserted is one the
sequence fixes (requests per route template and status, review decisions per action, the ES
calls of reads whose calls are known, the runs gauge).
"""

from __future__ import annotations

import httpx
import pytest
from elasticsearch import Elasticsearch
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.es_transport import operation_of
from api.settings import Settings
from store.run_claims import RunStore
from tests.api.conftest import REVIEW_KEY, client_for

pytestmark = [pytest.mark.es, pytest.mark.anyio]

ALICE = {"X-API-Key": REVIEW_KEY}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, route: str, status: str, method: str) -> float:
    return value(samples, "autotag_http_requests_total", method=method, route=route, status=status)


def by_prefix(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def test_counts_after_a_known_sequence(api_settings: Settings, seeded: str) -> None:
    async with client_for(create_app(api_settings)) as client:
        for _ in range(3):
            assert (await client.post("/v1/count", json={"query": "object_prefix:car"})).is_success
        bad = await client.post("/v1/count", json={"query": "object_prefix:car AND scor < 1"})
        assert bad.status_code == 400
        assert (await client.post("/v1/count", json={})).status_code == 422
        item = await client.get("/v1/items/i2")
        assert item.status_code == 200
        assert (await client.get("/v1/items/i1")).status_code == 200
        assert (await client.get("/v1/items/nope")).status_code == 404
        assert (await client.get("/nowhere/at/all")).status_code == 404
        assert (await client.get("/static/page/app.js")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        # Review: one prediction accepted by its endpoint, one item's review with two decisions,
        # then review by query (its count comes back in the answer).
        accepted = await client.post("/v1/items/i1/predictions/i1-car/accept", headers=ALICE)
        assert accepted.status_code == 200, accepted.text
        assert (await client.post("/v1/items/i1/predictions/i1-ped/reject")).status_code == 401
        saved = await client.post(
            "/v1/items/i2/review",
            json={
                "decisions": [
                    {"prediction_id": "i2-suv", "action": "reject"},
                    {"prediction_id": "i2-w", "action": "modify", "label": "weather_fog"},
                ],
                "expected_version": item.json()["version"],
            },
            headers=ALICE,
        )
        assert saved.status_code == 200, saved.text
        by_query = await client.post(
            "/v1/review-by-query",
            json={"query": "image_prefix:weather_clear", "action": "accept"},
            headers=ALICE,
        )
        assert by_query.status_code == 200, by_query.text
        # i1-w, i3-w, i4-w1, i4-w2: every pending weather_clear tag.
        assert by_query.json()["predictions"] == 4

        samples = await scrape(client)

    assert requests_of(samples, "/v1/count", "200", "POST") == 3
    assert requests_of(samples, "/v1/count", "400", "POST") == 1
    assert requests_of(samples, "/v1/count", "422", "POST") == 1
    # Per route template, never per raw path.
    assert requests_of(samples, "/v1/items/{item_id}", "200", "GET") == 2
    assert requests_of(samples, "/v1/items/{item_id}", "404", "GET") == 1
    assert requests_of(samples, "unmatched", "404", "GET") == 1
    assert requests_of(samples, "/static/page/{path}", "200", "GET") == 1
    assert requests_of(samples, "/openapi.json", "200", "GET") == 1
    accept_route = "/v1/items/{item_id}/predictions/{prediction_id}/accept"
    reject_route = "/v1/items/{item_id}/predictions/{prediction_id}/reject"
    assert requests_of(samples, accept_route, "200", "POST") == 1
    assert requests_of(samples, reject_route, "401", "POST") == 1
    assert requests_of(samples, "/v1/items/{item_id}/review", "200", "POST") == 1
    assert requests_of(samples, "/v1/review-by-query", "200", "POST") == 1
    # Nothing else was counted (the scrape counts itself once answered).
    assert sum(by_prefix(samples, "autotag_http_requests_total").values()) == 15
    assert not any("nope" in str(labels) or "i1" in str(labels) for (_, labels) in samples)

    # The latency histogram has one observation per request, under the same labels.
    count_200 = {"method": "POST", "route": "/v1/count", "status": "200"}
    assert value(samples, "autotag_http_request_duration_seconds_count", **count_200) == 3
    assert value(samples, "autotag_http_request_duration_seconds_bucket", le="+Inf", **count_200)
    assert value(samples, "autotag_http_request_duration_seconds_sum", **count_200) > 0

    assert by_prefix(samples, "autotag_review_actions_total") == {
        frozenset({("action", "accept"), ("via", "prediction")}): 1,
        frozenset({("action", "reject"), ("via", "item")}): 1,
        frozenset({("action", "modify"), ("via", "item")}): 1,
        frozenset({("action", "accept"), ("via", "query")}): 4,
    }

    # Reading one item is one GET of its document: 200 for the three found, 404 for the one not.
    es_doc = {"method": "GET", "operation": "_doc"}
    es_count = "autotag_es_request_duration_seconds_count"
    assert value(samples, es_count, status="404", **es_doc) == 1
    assert value(samples, es_count, status="200", **es_doc) >= 3
    # Every count request that reached the node ran one _count (the 400 and 422 never did), and
    # so did the scrape, counting the running runs.
    assert value(samples, es_count, method="POST", operation="_count", status="200") == 3 + 1
    assert value(samples, "autotag_runs_in_flight") == 0


async def test_the_runs_gauge_counts_every_worker_s_running_runs(
    api_settings: Settings, seeded: str, es: Elasticsearch, runs_index: str
) -> None:
    settings = api_settings.model_copy(update={"runs_index": runs_index})
    app: FastAPI = create_app(settings)
    async with client_for(app) as client:
        assert value(await scrape(client), "autotag_runs_in_flight") == 0  # no runs index yet
        runs = []
        for training_set in ("v1", "v2", "v3"):
            submitted = await client.post(
                "/v1/runs",
                json={"select": {"dataset": "d1"}, "training_set": training_set},
                headers=ALICE,
            )
            assert submitted.status_code == 201, submitted.text
            runs.append(submitted.json()["run_id"])
        assert value(await scrape(client), "autotag_runs_in_flight") == 0  # queued only
        store = RunStore(es, runs_index)
        store.plan_next()
        store.plan_next()  # what a worker does first: two runs start
        assert value(await scrape(client), "autotag_runs_in_flight") == 2
        cancelled = await client.post(f"/v1/runs/{runs[0]}/cancel", headers=ALICE)
        assert cancelled.status_code == 200
        assert value(await scrape(client), "autotag_runs_in_flight") == 1


async def test_two_apps_never_mix_counts(api_settings: Settings) -> None:
    first, second = create_app(api_settings), create_app(api_settings)
    async with client_for(first) as a, client_for(second) as b:
        await a.get("/v1/health/live")
        await a.get("/v1/health/live")
        await b.get("/v1/health/live")
        live = {"route": "/v1/health/live", "status": "200", "method": "GET"}
        assert value(await scrape(a), "autotag_http_requests_total", **live) == 2
        assert value(await scrape(b), "autotag_http_requests_total", **live) == 1


async def test_metrics_can_be_turned_off(api_settings: Settings) -> None:
    app = create_app(api_settings.model_copy(update={"metrics": False}))
    async with client_for(app) as client:
        assert (await client.get("/metrics")).status_code == 404


@pytest.mark.parametrize(
    ("target", "operation"),
    [
        ("/autotag-items/_search?size=0", "_search"),
        ("/autotag-items/_doc/item%2F7", "_doc"),
        ("/_bulk", "_bulk"),
        ("/_pit?keep_alive=2m", "_pit"),
        ("/test-items-1", "index"),
        ("/test-items-1/_mapping/field/metadata.*", "_mapping"),
    ],
)
def test_es_operations_are_bounded_labels(target: str, operation: str) -> None:
    assert operation_of(target) == operation
