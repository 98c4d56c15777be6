"""Saved slices through the API: save (checked), read, use in queries, rename, delete, and the
answers that say which slices are in the way. Against the real app and a real node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch

from search import parse, render, translate
from store.slices import slices_index
from tests.api.conftest import READ_KEY, REVIEW_KEY, error_of

pytestmark = [pytest.mark.es, pytest.mark.anyio]

ALICE = {"X-API-Key": REVIEW_KEY}


@pytest.fixture(autouse=True)
def _drop_slices(es: Elasticsearch, item_index: str) -> Iterator[None]:
    yield
    es.indices.delete(index=slices_index(item_index), ignore_unavailable=True)


async def _put(client: httpx.AsyncClient, name: str, query: str, **body: Any) -> httpx.Response:
    return await client.put(f"/v1/slices/{name}", json={"query": query, **body}, headers=ALICE)


async def _ids(client: httpx.AsyncClient, query: str) -> list[str]:
    response = await client.post("/v1/search", json={"query": query, "size": 100})
    assert response.status_code == 200, response.text
    return sorted(hit["item"]["item_id"] for hit in response.json()["hits"])


async def test_a_saved_slice_is_a_query_that_binds_like_a_group(
    client: httpx.AsyncClient, seeded: str
) -> None:
    saved = await _put(client, "cars", "object_prefix:car", description="every car")
    assert saved.status_code == 200, saved.text
    assert saved.json()["created"] is True
    assert saved.json()["slice"]["expansion"] == "object_prefix:car"

    sliced = await _ids(client, "slice = cars AND score >= 0.8")
    assert sliced == await _ids(client, "(object_prefix:car) AND score >= 0.8") == ["i1"]
    # Not "some car, and some prediction >= 0.8": i3 has both but no confident car.
    assert await _ids(client, "object_prefix:car") == ["i1", "i2", "i3"]

    count = await client.post("/v1/count", json={"query": 'slice = "cars"'})
    assert count.json()["count"] == 3
    assert count.json()["query"] == "object_prefix:car"


async def test_translate_shows_the_expansion_and_the_slices_used(
    client: httpx.AsyncClient, seeded: str
) -> None:
    await _put(client, "cars", "object_prefix:car")
    await _put(client, "sure_cars", "slice = cars AND score >= 0.8")
    response = await client.post(
        "/v1/translate", json={"query": "slice = sure_cars OR dataset = d3"}
    )
    assert response.status_code == 200, response.text
    written_out = "(object_prefix:car AND score >= 0.8) OR dataset = d3"
    assert response.json() == {
        "query": render(parse(written_out)),
        "dsl": translate(parse(written_out)),
        "slices": {"cars": "object_prefix:car", "sure_cars": "slice = cars AND score >= 0.8"},
    }


async def test_a_changed_slice_changes_the_next_query(
    client: httpx.AsyncClient, seeded: str
) -> None:
    await _put(client, "here", "dataset = d1")
    assert await _ids(client, "slice = here") == ["i1", "i2"]
    replaced = await _put(client, "here", "dataset = d2")
    assert replaced.json()["created"] is False
    assert await _ids(client, "slice = here") == ["i3", "i4"]


async def test_saving_needs_a_review_key_and_reading_follows_read_rules(
    client: httpx.AsyncClient, seeded: str
) -> None:
    anonymous = await client.put("/v1/slices/cars", json={"query": "object_prefix:car"})
    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "unauthorized"
    reader = await client.put(
        "/v1/slices/cars", json={"query": "object_prefix:car"}, headers={"X-API-Key": READ_KEY}
    )
    assert reader.status_code == 403
    assert (await client.delete("/v1/slices/cars")).status_code == 401
    # Reads are open in this app.
    assert (await client.get("/v1/slices")).json() == {"slices": []}


async def test_a_slice_query_is_checked_when_saved(client: httpx.AsyncClient, seeded: str) -> None:
    bad = await _put(client, "typo", "object_prefix:car AND scor > 0.5")
    assert bad.status_code == 400
    details = error_of(bad)["details"]
    assert (details["reason"], details["start"], details["end"]) == ("unknown_field", 22, 26)
    assert details["query"] == "object_prefix:car AND scor > 0.5"

    unknown = await _put(client, "uses", "slice = nothing")
    assert error_of(unknown)["details"]["reason"] == "unknown_slice"

    await _put(client, "a", "dataset = d1")
    assert (await _put(client, "b", "slice = a OR dataset = d2")).status_code == 200
    cycle = await _put(client, "a", "slice = b")
    assert cycle.status_code == 400
    assert error_of(cycle)["details"]["reason"] == "slice_cycle"
    assert error_of(cycle)["message"].endswith("cycle: `b` -> `a` -> `b`")
    assert (error_of(cycle)["details"]["start"], error_of(cycle)["details"]["end"]) == (0, 9)

    bad_name = await _put(client, "-nope", "dataset = d1")
    assert bad_name.status_code == 422


async def test_an_unknown_slice_in_a_query_points_at_the_term(
    client: httpx.AsyncClient, seeded: str
) -> None:
    await _put(client, "night_highway", "dataset = d1")
    query = "dataset = d2 OR slice = nigth_highway"
    response = await client.post("/v1/search", json={"query": query})
    assert response.status_code == 400
    details = error_of(response)["details"]
    assert details["reason"] == "unknown_slice"
    assert (details["start"], details["end"]) == (16, len(query))
    assert details["hint"] == "did you mean `night_highway`?"


async def test_list_and_get_say_what_uses_what(client: httpx.AsyncClient, seeded: str) -> None:
    await _put(client, "cars", "object_prefix:car")
    await _put(client, "sure_cars", "slice = cars AND score >= 0.8")
    await _put(client, "d1_sure_cars", "slice = sure_cars AND dataset = d1")
    listed = (await client.get("/v1/slices")).json()["slices"]
    assert [s["name"] for s in listed] == ["cars", "d1_sure_cars", "sure_cars"]
    cars = (await client.get("/v1/slices/cars")).json()
    assert cars["used_by"] == ["d1_sure_cars", "sure_cars"]
    assert cars["references"] == []
    top = (await client.get("/v1/slices/d1_sure_cars")).json()
    assert top["references"] == ["sure_cars"]
    assert top["expansion"] == "(object_prefix:car AND score >= 0.8) AND dataset = d1"
    missing = await client.get("/v1/slices/trucks")
    assert missing.status_code == 404
    assert error_of(missing)["details"]["slices"] == ["cars", "d1_sure_cars", "sure_cars"]


async def test_deleting_a_slice_in_use_names_the_users(
    client: httpx.AsyncClient, seeded: str
) -> None:
    await _put(client, "cars", "object_prefix:car")
    await _put(client, "sure_cars", "slice = cars AND score >= 0.8")
    await _put(client, "d1_sure_cars", "slice = sure_cars AND dataset = d1")
    refused = await client.delete("/v1/slices/cars", headers=ALICE)
    assert refused.status_code == 409
    error = error_of(refused)
    assert error["code"] == "slice_in_use"
    assert error["details"]["dependants"] == ["d1_sure_cars", "sure_cars"]
    assert (await client.get("/v1/slices/cars")).status_code == 200

    forced = await client.delete("/v1/slices/cars", params={"force": "true"}, headers=ALICE)
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"deleted": "cars", "broken": ["d1_sure_cars", "sure_cars"]}
    # The users now fail with the caret on the term the user typed, naming the missing slice.
    broken = await client.post("/v1/count", json={"query": "slice = d1_sure_cars"})
    assert broken.status_code == 400
    details = error_of(broken)["details"]
    assert details["reason"] == "unknown_slice"
    assert (details["start"], details["end"]) == (0, 20)
    assert "unknown slice `cars` (used by `d1_sure_cars` -> `sure_cars`)" in details["rendered"]
    listed = (await client.get("/v1/slices/sure_cars")).json()
    assert listed["expansion"] is None
    assert "unknown slice `cars`" in listed["error"]
    # A slice nobody uses goes without force.
    assert (await client.delete("/v1/slices/d1_sure_cars", headers=ALICE)).status_code == 200
    assert (await client.delete("/v1/slices/d1_sure_cars", headers=ALICE)).status_code == 404


async def test_renaming_a_slice_in_use(client: httpx.AsyncClient, seeded: str) -> None:
    await _put(client, "cars", "object_prefix:car")
    await _put(client, "sure_cars", "slice = cars AND score >= 0.8")
    before = await _ids(client, "slice = sure_cars")
    refused = await client.post("/v1/slices/cars/rename", json={"to": "autos"}, headers=ALICE)
    assert refused.status_code == 409
    assert error_of(refused)["details"]["dependants"] == ["sure_cars"]

    renamed = await client.post(
        "/v1/slices/cars/rename", json={"to": "autos", "update_dependants": True}, headers=ALICE
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["updated"] == ["sure_cars"]
    assert renamed.json()["slice"]["used_by"] == ["sure_cars"]
    assert (await client.get("/v1/slices/cars")).status_code == 404
    user = (await client.get("/v1/slices/sure_cars")).json()
    assert user["query"] == "slice = autos AND score >= 0.8"
    assert await _ids(client, "slice = sure_cars") == before == ["i1"]

    taken = await client.post("/v1/slices/autos/rename", json={"to": "sure_cars"}, headers=ALICE)
    assert taken.status_code == 409


async def test_a_change_that_would_break_a_user_is_refused(
    client: httpx.AsyncClient, seeded: str
) -> None:
    await _put(client, "cars", "object_prefix:car")
    await _put(client, "many_cars", "count(slice = cars) >= 2")
    # An item field cannot be counted: `many_cars` would stop parsing.
    refused = await _put(client, "cars", "dataset = d1")
    assert refused.status_code == 409
    error = error_of(refused)
    assert error["details"]["broken"] == "many_cars"
    assert error["details"]["error"]["reason"] == "invalid_count"
    assert (await client.get("/v1/slices/cars")).json()["query"] == "object_prefix:car"
