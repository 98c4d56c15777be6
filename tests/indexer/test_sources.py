"""Sources: folders and manifests, stable ids, slices, and bad input reported (never raised)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from indexer.sources import SliceFilter, SourceItem, item_id_for, open_source, read_manifest


def _png(path: Path, colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path)
    return path


def test_folder_is_recursive_sorted_and_ids_are_dataset_slash_relative_path(tmp_path: Path) -> None:
    root = tmp_path / "cam1"
    _png(root / "b.png")
    _png(root / "a" / "c.jpg")
    _png(root / ".hidden" / "x.png")
    (root / "notes.txt").write_text("not an image")

    source = open_source(root)

    assert [item.item_id for item in source.items] == ["cam1/a/c.jpg", "cam1/b.png"]
    assert {item.dataset for item in source.items} == {"cam1"}
    assert source.items[0].uri == (root / "a" / "c.jpg").resolve().as_uri()
    assert source.items[0].uploaded_at is not None
    assert source.problems == []


def test_folder_ids_are_stable_across_runs_and_locations(tmp_path: Path) -> None:
    for where in ("one", "two"):
        _png(tmp_path / where / "data" / "img.png")
    first = open_source(tmp_path / "one" / "data", dataset="fleet")
    second = open_source(tmp_path / "two" / "data", dataset="fleet")
    assert (
        [i.item_id for i in first.items] == [i.item_id for i in second.items] == ["fleet/img.png"]
    )
    assert item_id_for("fleet", "img.png") == "fleet/img.png"
    assert item_id_for(None, "/img.png") == "img.png"


def test_jsonl_manifest_relative_absolute_and_file_uris(tmp_path: Path) -> None:
    a = _png(tmp_path / "imgs" / "a.png")
    b = _png(tmp_path / "elsewhere" / "b.png")
    c = _png(tmp_path / "imgs" / "c.png")
    manifest = tmp_path / "manifest.jsonl"
    rows = [
        {"item_id": "a", "uri": "imgs/a.png", "dataset": "d1", "metadata": {"camera": "front"}},
        {"item_id": "b", "uri": str(b), "dataset": "d1"},
        {"item_id": "c", "uri": c.as_uri(), "dataset": "d2", "uploaded_at": "2025-01-01T00:00:00Z"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")

    source = open_source(manifest)

    assert [i.item_id for i in source.items] == ["a", "b", "c"]
    assert [i.path for i in source.items] == [a, b, c]
    assert source.items[0].fields() == {
        "item_id": "a",
        "uri": "imgs/a.png",
        "dataset": "d1",
        "metadata": {"camera": "front"},
    }
    assert source.items[2].uploaded_at == "2025-01-01T00:00:00Z"
    assert source.problems == []


def test_csv_manifest_extra_columns_become_metadata(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        'item_id,uri,dataset,camera,metadata\na,a.png,d1,front,"{""route"": 7}"\nb,b.png,d1,rear,\n'
    )

    source = read_manifest(manifest)

    assert [i.metadata for i in source.items] == [
        {"route": 7, "camera": "front"},
        {"camera": "rear"},
    ]


def test_bad_input_is_reported_and_nothing_else_is_lost(tmp_path: Path) -> None:
    _png(tmp_path / "ok1.png")
    _png(tmp_path / "ok2.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "\n".join(
            [
                json.dumps({"item_id": "ok1", "uri": "ok1.png"}),
                "{not json",
                json.dumps({"uri": "no-id.png"}),
                json.dumps({"item_id": "gone", "uri": "missing.png"}),
                json.dumps({"item_id": "ok1", "uri": "ok2.png"}),  # duplicate id
                json.dumps({"item_id": "web", "uri": "https://example.com/x.png"}),
                json.dumps(["a list"]),
                json.dumps({"item_id": "ok2", "uri": "ok2.png"}),
            ]
        )
    )

    source = open_source(manifest)

    assert [i.item_id for i in source.items] == ["ok1", "ok2"]
    reasons = {(p.item_id, p.reason.split(": ", 1)[-1]) for p in source.problems}
    assert ("gone", "file not found") in reasons
    assert ("ok1", "duplicate item id (uri ok2.png)") in reasons
    assert ("web", "not a local file (unsupported URI scheme)") in reasons
    assert any(p.reason.startswith("m.jsonl:2: not JSON") for p in source.problems)
    assert any(p.reason == "m.jsonl:3: no item_id" for p in source.problems)
    assert any(p.reason == "m.jsonl:7: not a JSON object" for p in source.problems)
    assert len(source.problems) == 6


def test_missing_source_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no folder or manifest"):
        open_source(tmp_path / "nope")


def _item(dataset: str | None, **metadata: object) -> SourceItem:
    return SourceItem("i", "u", None, dataset=dataset, metadata=metadata)


@pytest.mark.parametrize(
    ("datasets", "conditions", "item", "expected"),
    [
        ((), (), _item(None), True),
        (("d1",), (), _item("d1"), True),
        (("d1",), (), _item("d2"), False),
        ((), ("dataset=d2",), _item("d2"), True),
        ((), ("camera=front",), _item("d1", camera="front"), True),
        ((), ("metadata.camera=front",), _item("d1", camera="rear"), False),
        ((), ("route=7",), _item("d1", route=7), True),
        ((), ("tags=night",), _item("d1", tags=["day", "night"]), True),
        ((), ("rig.side=left",), _item("d1", rig={"side": "left"}), True),
        ((), ("rig.side=left", "camera=front"), _item("d1", rig={"side": "left"}), False),
        ((), ("wet=true",), _item("d1", wet=True), True),
    ],
)
def test_slice_filter(
    datasets: tuple[str, ...], conditions: tuple[str, ...], item: SourceItem, expected: bool
) -> None:
    assert SliceFilter.parse(datasets, conditions).matches(item) is expected


def test_slice_filter_rejects_malformed_conditions() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        SliceFilter.parse((), ["camera"])


def test_slice_applies_before_checks(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"item_id": "a", "uri": "a.png", "dataset": "d1"})
        + "\n"
        + json.dumps({"item_id": "b", "uri": "missing.png", "dataset": "d2"})
        + "\n"
    )
    source = open_source(manifest, slice_filter=SliceFilter.parse(["d1"]))
    assert [i.item_id for i in source.items] == ["a"]
    assert source.problems == []  # the missing file is outside the slice
