"""The review workflow: accept / reject / modify, history, derived status, auth, concurrency."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from tests.api.conftest import BOX, OTHER_REVIEW_KEY, READ_KEY, REVIEW_KEY, error_of, pred, seed

pytestmark = [pytest.mark.es, pytest.mark.anyio]

ALICE = {"X-API-Key": REVIEW_KEY}


def _url(item_id: str, prediction_id: str, action: str) -> str:
    return f"/v1/items/{item_id}/predictions/{prediction_id}/{action}"


async def _item(client: httpx.AsyncClient, item_id: str) -> dict[str, Any]:
    item: dict[str, Any] = (await client.get(f"/v1/items/{item_id}")).json()["item"]
    return item


async def test_review_flow(client: httpx.AsyncClient, seeded: str) -> None:
    # i1: weather_clear, car, pedestrian -- all pending.
    accepted = await client.post(_url("i1", "i1-w", "accept"), headers=ALICE)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["attempts"] == 1
    assert body["event"]["action"] == "accept"
    assert body["event"]["who"] == "alice"
    assert body["event"]["before"] == {"label": "weather_clear", "status": "pending"}
    assert body["event"]["after"] == {"label": "weather_clear", "status": "accepted"}
    assert body["item"]["autotag_status"] == ["pending"]

    await client.post(_url("i1", "i1-car", "accept"), headers=ALICE)
    done = await client.post(
        _url("i1", "i1-ped", "accept"), headers=ALICE, json={"reviewer": "carol"}
    )
    # Every prediction accepted unchanged: accepted (and reviewed).
    assert done.json()["item"]["autotag_status"] == ["reviewed", "accepted"]
    assert done.json()["event"]["who"] == "carol"

    # A modification keeps the model's label, and the item is no longer "accepted".
    new_box = {"x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 10.0}
    modified = await client.post(
        _url("i1", "i1-ped", "modify"),
        headers=ALICE,
        json={"label": "cyclist", "bbox": new_box},
    )
    assert modified.status_code == 200, modified.text
    item = await _item(client, "i1")
    ped = item["object_predictions"][1]
    assert (ped["label"], ped["original_label"], ped["status"]) == (
        "cyclist",
        "pedestrian",
        "modified",
    )
    assert ped["bbox"] == new_box
    assert ped["original_bbox"] == BOX  # the model's box, for evaluation
    assert ped["label_prefixes"] == ["cyclist"]
    assert item["autotag_status"] == ["reviewed"]

    # Relabelling again keeps the first original label; accepting keeps it modified.
    await client.post(_url("i1", "i1-ped", "modify"), headers=ALICE, json={"label": "rider"})
    await client.post(_url("i1", "i1-ped", "accept"), headers=ALICE)
    ped = (await _item(client, "i1"))["object_predictions"][1]
    assert (ped["label"], ped["original_label"], ped["status"]) == (
        "rider",
        "pedestrian",
        "modified",
    )

    # A second box change keeps the model's box as the original.
    await client.post(_url("i1", "i1-ped", "modify"), headers=ALICE, json={"bbox": BOX})
    assert (await _item(client, "i1"))["object_predictions"][1]["original_bbox"] == BOX
    assert (await _item(client, "i1"))["object_predictions"][1]["bbox"] == BOX

    # Reject; the history tells the whole story in order.
    await client.post(_url("i1", "i1-car", "reject"), headers=ALICE)
    item = await _item(client, "i1")
    history = item["review_history"]
    assert [(e["action"], e["prediction_id"]) for e in history] == [
        ("accept", "i1-w"),
        ("accept", "i1-car"),
        ("accept", "i1-ped"),
        ("modify", "i1-ped"),
        ("modify", "i1-ped"),
        ("accept", "i1-ped"),
        ("modify", "i1-ped"),
        ("reject", "i1-car"),
    ]
    assert history[3]["before"] == {"label": "pedestrian", "status": "accepted", "bbox": BOX}
    assert all(e["at"].endswith("Z") and e["api_key"] == "alice" for e in history)


async def test_reviews_are_visible_to_queries(client: httpx.AsyncClient, seeded: str) -> None:
    await client.post(_url("i2", "i2-suv", "reject"), headers=ALICE)
    await client.post(_url("i3", "i3-car", "modify"), headers=ALICE, json={"label": "truck"})
    response = await client.post("/v1/search", json={"query": "object_prefix:car"})
    assert [h["item"]["item_id"] for h in response.json()["hits"]] == ["i1"]
    count = await client.post("/v1/count", json={"query": "object_prefix:truck"})
    assert count.json()["count"] == 1


@pytest.mark.parametrize(
    ("item_id", "prediction_id", "code"),
    [("nope", "x", "item_not_found"), ("i1", "nope", "prediction_not_found")],
)
async def test_unknown_item_or_prediction(
    client: httpx.AsyncClient, seeded: str, item_id: str, prediction_id: str, code: str
) -> None:
    response = await client.post(_url(item_id, prediction_id, "accept"), headers=ALICE)
    assert response.status_code == 404
    assert error_of(response)["code"] == code


async def test_modify_needs_a_change_and_no_box_on_images(
    client: httpx.AsyncClient, seeded: str
) -> None:
    empty = await client.post(_url("i1", "i1-car", "modify"), headers=ALICE, json={})
    assert empty.status_code == 422
    boxed = await client.post(
        _url("i1", "i1-w", "modify"), headers=ALICE, json={"bbox": BOX, "label": "x"}
    )
    assert boxed.status_code == 422
    assert error_of(boxed)["code"] == "bbox_not_allowed"
    bad_box = await client.post(
        _url("i1", "i1-car", "modify"), headers=ALICE, json={"bbox": {"x1": 1.0}}
    )
    assert bad_box.status_code == 422
    assert (await _item(client, "i1")).get("review_history") is None
    # Corners in either order are stored ordered.
    inverted = {"x1": 5.0, "y1": 9.0, "x2": 1.0, "y2": 1.0}
    ok = await client.post(_url("i1", "i1-car", "modify"), headers=ALICE, json={"bbox": inverted})
    assert ok.json()["item"]["object_predictions"][0]["bbox"] == {
        "x1": 1.0,
        "y1": 1.0,
        "x2": 5.0,
        "y2": 9.0,
    }


async def test_review_needs_a_review_key(client: httpx.AsyncClient, seeded: str) -> None:
    url = _url("i1", "i1-car", "accept")
    assert error_of(await client.post(url))["code"] == "unauthorized"
    wrong = await client.post(url, headers={"X-API-Key": "guess"})
    assert (wrong.status_code, error_of(wrong)["code"]) == (401, "unauthorized")
    read_only = await client.post(url, headers={"X-API-Key": READ_KEY})
    assert (read_only.status_code, error_of(read_only)["code"]) == (403, "forbidden")
    assert (await _item(client, "i1")).get("review_history") is None


async def test_a_stale_revision_gets_409(client: httpx.AsyncClient, seeded: str) -> None:
    version = (await client.get("/v1/items/i1")).json()["version"]
    pinned = {"expected_version": version}
    first = await client.post(_url("i1", "i1-car", "accept"), headers=ALICE, json=pinned)
    assert first.status_code == 200
    second = await client.post(_url("i1", "i1-ped", "reject"), headers=ALICE, json=pinned)
    assert second.status_code == 409
    error = error_of(second)
    assert error["code"] == "conflict"
    assert error["details"]["current_version"] == first.json()["version"]


async def test_concurrent_reviews_lose_no_update(
    client: httpx.AsyncClient, es: Elasticsearch, item_index: str
) -> None:
    """Many clients review predictions of the same few items at once; all changes survive."""
    items: list[dict[str, Any]] = [
        {
            "item_id": f"c{i}",
            "object_predictions": [pred(f"c{i}-p{j}", "car", 0.5, bbox=BOX) for j in range(12)],
        }
        for i in range(3)
    ]
    seed(es, item_index, items)
    rng = random.Random(7)
    plan: list[tuple[str, str, str, dict[str, Any]]] = []
    for item in items:
        for p in item["object_predictions"]:
            action = rng.choice(["accept", "reject", "modify"])
            body = {"label": f"{p['id']}_new"} if action == "modify" else {}
            plan.append((item["item_id"], p["id"], action, body))
    rng.shuffle(plan)
    keys = [REVIEW_KEY, OTHER_REVIEW_KEY]

    async def one(i: int, item_id: str, pid: str, action: str, body: dict[str, Any]) -> int:
        headers = {"X-API-Key": keys[i % 2]}
        # A 409 means "re-read and retry": the server already retried a bounded number of
        # times; a client facing this much contention on one item simply sends again.
        for _ in range(10):
            response = await client.post(_url(item_id, pid, action), headers=headers, json=body)
            if response.status_code != 409:
                break
        assert response.status_code == 200, response.text
        attempts: int = response.json()["attempts"]
        return attempts

    attempts = await asyncio.gather(*(one(i, *step) for i, step in enumerate(plan)))
    assert max(attempts) > 1, "the test should provoke write conflicts"

    expected_status = {"accept": "accepted", "reject": "rejected", "modify": "modified"}
    for item in items:
        stored = es.get(index=item_index, id=item["item_id"])["_source"]
        assert len(stored["review_history"]) == 12
        by_id = {p["id"]: p for p in stored["object_predictions"]}
        for item_id, pid, action, body in plan:
            if item_id != item["item_id"]:
                continue
            assert by_id[pid]["status"] == expected_status[action]
            if action == "modify":
                assert by_id[pid]["label"] == body["label"]
                assert by_id[pid]["original_label"] == "car"
        assert stored["autotag_status"] == ["reviewed"]
