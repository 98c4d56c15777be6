"""``autotag export``: outputs, refusals and messages (the content is tested in tests/export)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from cli.main import main
from store.documents import prepare_item

pytestmark = pytest.mark.es

BOX = {"x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 20.0}


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch, es: Elasticsearch, es_url: str, item_index: str) -> str:
    monkeypatch.delenv("ES_URL", raising=False)
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    operations: list[dict[str, object]] = []
    for number in range(30):
        item = prepare_item(
            {
                "item_id": f"d/{number:02d}.png",
                "width": 100,
                "height": 100,
                "object_predictions": [
                    {"label": "car", "score": number / 30, "bbox": BOX, "training_set": "v1"}
                ],
            }
        )
        operations += [{"index": {"_index": item_index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    return item_index


def test_zip_folder_and_stdout(
    index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "yolo.zip"
    assert (
        main(
            [
                "export",
                "object_prefix:car",
                "--format",
                "yolo",
                "-o",
                str(target),
                "--sample",
                "uncertain",
                "--n",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    archive = zipfile.ZipFile(target)
    # The four cars nearest 0: scores 0, 1/30, 2/30, 3/30.
    assert sorted(n for n in archive.namelist() if n.startswith("labels/")) == [
        f"labels/d/{number:02d}.txt" for number in range(4)
    ]
    assert "exported 4 items (0 image and 4 object predictions, predictions)" in (
        capsys.readouterr().err
    )
    assert not list(tmp_path.glob("*.partial"))

    folder = tmp_path / "coco"
    folder.mkdir()  # an empty folder is a fine target
    assert (
        main(
            ["export", "object_prefix:car", "--format", "coco", "-o", str(folder), "--no-progress"]
        )
        == 0
    )
    assert json.loads((folder / "export.json").read_text())["items"] == 30

    capsys.readouterr()
    assert (
        main(["export", "object_prefix:car AND score >= 0.9", "--format", "jsonl", "--no-progress"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["item_id"] for line in lines] == ["d/27.png", "d/28.png", "d/29.png"]


def test_refusals(index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "object_prefix:car", "--format", "coco", "--no-progress"]) == 2
    assert "give -o DIR or -o FILE.zip" in capsys.readouterr().err
    assert main(["export", "x = 1", "--format", "jsonl", "--sample", "random"]) == 2
    assert "--sample and --n go together" in capsys.readouterr().err
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me")
    assert main(["export", "object_prefix:car", "--format", "jsonl", "-o", str(taken)]) == 2
    assert taken.read_text() == "keep me"
    assert main(["export", "scor > 1", "--format", "jsonl", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "unknown field `scor`" in err
    assert "^^^^" in err
