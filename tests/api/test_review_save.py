"""Save your review: one item's staged decisions applied together, atomically, or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from tests.api.conftest import READ_KEY, REVIEW_KEY, error_of

pytestmark = [pytest.mark.es, pytest.mark.anyio]

ALICE = {"X-API-Key": REVIEW_KEY}
NEW_BOX = {"x1": 5.0, "y1": 6.0, "x2": 50.0, "y2": 60.0}


async def _read(client: httpx.AsyncClient, item_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/items/{item_id}")).json()
    return body


async def _save(
    client: httpx.AsyncClient,
    item_id: str,
    decisions: list[dict[str, Any]],
    version: dict[str, int],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/items/{item_id}/review",
        json={"decisions": decisions, "expected_version": version},
        headers=ALICE if headers is None else headers,
    )


async def test_every_decision_is_applied_in_one_write(
    client: httpx.AsyncClient, seeded: str, es: Elasticsearch
) -> None:
    before = await _read(client, "i1")
    version_before = es.get(index=seeded, id="i1")["_version"]
    decisions: list[dict[str, Any]] = [
        {"prediction_id": "i1-w", "action": "accept"},
        {"prediction_id": "i1-car", "action": "modify", "bbox": NEW_BOX},
        {"prediction_id": "i1-ped", "action": "modify", "label": "cyclist"},
    ]
    saved = await _save(client, "i1", decisions, before["version"])
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert es.get(index=seeded, id="i1")["_version"] == version_before + 1  # one write
    assert [e["prediction_id"] for e in body["events"]] == ["i1-w", "i1-car", "i1-ped"]
    assert len({e["at"] for e in body["events"]}) == 1
    after = await _read(client, "i1")
    item = after["item"]
    assert after["version"] == body["version"]
    assert item["image_predictions"][0]["status"] == "accepted"
    car, ped = item["object_predictions"]
    assert (car["status"], car["label"], car["original_label"], car["bbox"]) == (
        "modified",
        "car",
        "car",
        NEW_BOX,
    )
    assert car["box_area"] == 45.0 * 54.0  # derived fields recomputed
    assert (ped["label"], ped["original_label"], ped["label_prefixes"]) == (
        "cyclist",
        "pedestrian",
        ["cyclist"],
    )
    assert item["autotag_status"] == ["reviewed"]
    assert [e["prediction_id"] for e in item["review_history"]] == ["i1-w", "i1-car", "i1-ped"]
    # The search sees it at once (review refresh) and by the new label.
    count = await client.post("/v1/count", json={"query": "object_prefix:cyclist"})
    assert count.json()["count"] == 1


async def test_a_stale_version_is_a_conflict_showing_the_current_state(
    client: httpx.AsyncClient, seeded: str
) -> None:
    seen = await _read(client, "i1")
    # Someone else reviews in between.
    other = await client.post("/v1/items/i1/predictions/i1-car/reject", headers=ALICE)
    assert other.status_code == 200
    stale = await _save(
        client, "i1", [{"prediction_id": "i1-car", "action": "accept"}], seen["version"]
    )
    assert stale.status_code == 409
    error = error_of(stale)
    assert error["code"] == "conflict"
    now = await _read(client, "i1")
    assert error["details"]["current_version"] == now["version"]
    assert error["details"]["current_item"]["object_predictions"][0]["status"] == "rejected"
    # Nothing of the stale save was written.
    assert now["item"]["object_predictions"][0]["status"] == "rejected"
    assert len(now["item"]["review_history"]) == 1


async def test_one_bad_decision_writes_nothing(client: httpx.AsyncClient, seeded: str) -> None:
    seen = await _read(client, "i1")
    cases: list[tuple[list[dict[str, Any]], int, str]] = [
        (
            [
                {"prediction_id": "i1-car", "action": "accept"},
                {"prediction_id": "nope", "action": "reject"},
            ],
            404,
            "prediction_not_found",
        ),
        (
            [
                {"prediction_id": "i1-car", "action": "accept"},
                {"prediction_id": "i1-w", "action": "modify", "bbox": NEW_BOX},
            ],
            422,
            "bbox_not_allowed",
        ),
    ]
    for decisions, status, code in cases:
        answer = await _save(client, "i1", decisions, seen["version"])
        assert answer.status_code == status, answer.text
        assert error_of(answer)["code"] == code
    assert await _read(client, "i1") == seen


@pytest.mark.parametrize(
    "decisions",
    [
        [],
        [{"prediction_id": "i1-car", "action": "accept", "label": "x"}],
        [{"prediction_id": "i1-car", "action": "modify"}],
        [{"prediction_id": "i1-car", "action": "explode"}],
    ],
)
async def test_invalid_decisions_are_422(
    client: httpx.AsyncClient, seeded: str, decisions: list[dict[str, Any]]
) -> None:
    seen = await _read(client, "i1")
    answer = await _save(client, "i1", decisions, seen["version"])
    assert answer.status_code == 422
    assert error_of(answer)["code"] == "validation_error"


async def test_a_prediction_decided_twice_is_refused(
    client: httpx.AsyncClient, seeded: str
) -> None:
    seen = await _read(client, "i1")
    twice = [
        {"prediction_id": "i1-car", "action": "accept"},
        {"prediction_id": "i1-car", "action": "reject"},
    ]
    answer = await _save(client, "i1", twice, seen["version"])
    assert answer.status_code == 422
    assert error_of(answer)["details"]["prediction_ids"] == ["i1-car"]
    assert await _read(client, "i1") == seen


async def test_racing_saves_of_one_version_one_wins(client: httpx.AsyncClient, seeded: str) -> None:
    seen = await _read(client, "i2")
    saves = [
        _save(client, "i2", [{"prediction_id": "i2-suv", "action": action}], seen["version"])
        for action in ("accept", "reject") * 3
    ]
    answers = await asyncio.gather(*saves)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409, 409, 409, 409, 409]
    winner = next(a for a in answers if a.status_code == 200).json()
    now = await _read(client, "i2")
    assert len(now["item"]["review_history"]) == 1
    assert (
        now["item"]["object_predictions"][0]["status"]
        == winner["item"]["object_predictions"][0]["status"]
    )


async def test_saving_needs_a_review_key(client: httpx.AsyncClient, seeded: str) -> None:
    seen = await _read(client, "i1")
    decisions = [{"prediction_id": "i1-car", "action": "accept"}]
    assert (await _save(client, "i1", decisions, seen["version"], {})).status_code == 401
    read_only = {"X-API-Key": READ_KEY}
    assert (await _save(client, "i1", decisions, seen["version"], read_only)).status_code == 403
