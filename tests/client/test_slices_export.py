"""Saved slices and exports through the client, against a real server and node."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from client import AsyncClient, Client, Conflict, NotFound, QueryError

pytestmark = pytest.mark.es


def test_slices_are_saved_used_renamed_and_deleted(autotag: Client) -> None:
    saved = autotag.save_slice("cars", "object_prefix:car", description="every car")
    assert (saved.created, saved.slice.expansion) == (True, "object_prefix:car")
    autotag.save_slice("sure_cars", "slice = cars AND score >= 0.8")
    assert [hit.item.item_id for hit in autotag.search("slice = sure_cars")] == ["i1"]
    assert autotag.translate("slice = sure_cars").slices == {
        "sure_cars": "slice = cars AND score >= 0.8",
        "cars": "object_prefix:car",
    }
    assert [s.name for s in autotag.slices().slices] == ["cars", "sure_cars"]
    assert autotag.get_slice("cars").used_by == ["sure_cars"]

    with pytest.raises(Conflict):
        autotag.rename_slice("cars", "autos")
    renamed = autotag.rename_slice("cars", "autos", update_dependants=True)
    assert (renamed.previous, renamed.updated) == ("cars", ["sure_cars"])
    with pytest.raises(Conflict):
        autotag.delete_slice("autos")
    assert autotag.delete_slice("autos", force=True).broken == ["sure_cars"]
    with pytest.raises(NotFound):
        autotag.get_slice("autos")
    assert autotag.get_slice("sure_cars").error is not None


def test_a_jsonl_export_is_written_whole_with_its_statement(
    autotag: Client, tmp_path: Path
) -> None:
    target = tmp_path / "cars.jsonl"
    statement = autotag.export("object_prefix:car", target, format="jsonl")
    assert statement["query"] == "object_prefix:car"
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    # Every car-matching item, as search finds them (i4's only car is rejected).
    assert [line["item_id"] for line in lines] == [
        hit.item.item_id for hit in autotag.search("object_prefix:car", sort="item_id")
    ]
    assert not list(tmp_path.glob("*.part"))


def test_a_failed_export_leaves_no_file(autotag: Client, tmp_path: Path) -> None:
    target = tmp_path / "bad.jsonl"
    with pytest.raises(QueryError) as bad:
        autotag.export("object_prefix:car AND scor < 1", target, format="jsonl")
    assert bad.value.code == "unknown_field"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_the_async_client_exports_a_coco_bundle_into_a_file_object(api_url: str) -> None:
    buffer = io.BytesIO()
    async with AsyncClient(api_url) as autotag:
        statement = await autotag.export(
            "object_prefix:car", buffer, format="coco", sample={"strategy": "random", "n": 2}
        )
    with zipfile.ZipFile(buffer) as bundle:
        written = json.loads(bundle.read("export.json"))
    # The bundle's own statement is the header's, with what was written added.
    assert {key: written[key] for key in statement} == statement
    assert (statement["sampling"]["n"], written["items"]) == (2, 2)
