"""`autotag index` offline: real photos with the shipped tiny models, and a clear failure when
pretrained weights would need a download."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage
from elasticsearch import Elasticsearch

from cli.main import main
from indexer.taxonomy import load_taxonomy

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "cache"))


@pytest.mark.es
@pytest.mark.usefixtures("offline")
def test_index_scikit_image_photos_with_the_shipped_models(
    tmp_path: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    data = Path(skimage.__file__).parent / "data"
    for name in PHOTOS:
        (photos / name).write_bytes((data / name).read_bytes())
    monkeypatch.setenv("ES_URL", es_url)
    argv = [
        "index",
        str(photos),
        "--index",
        item_index,
        "--training-set",
        "tiny_v1",
        "--no-progress",
        "--workers",
        "1",
        "--failures-file",
        str(tmp_path / "f.jsonl"),
    ]
    assert main(argv) == 0
    assert "items seen" in capsys.readouterr().out
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index)["count"] == len(PHOTOS)
    doc = es.get(index=item_index, id="photos/astronaut.png")["_source"]
    tags = {p["label"] for p in doc["image_predictions"]}
    assert tags == set(load_taxonomy().image_labels)
    assert all(-1 <= p["score"] <= 1 for p in doc["image_predictions"])
    assert {p["training_set"] for p in doc["image_predictions"]} == {"tiny_v1"}
    assert doc["width"] == 512


@pytest.mark.usefixtures("offline")
def test_a_pretrained_tag_without_network_fails_with_how_to_provide_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    data = Path(skimage.__file__).parent / "data"
    (photos / "coffee.png").write_bytes((data / "coffee.png").read_bytes())
    argv = [
        "index",
        str(photos),
        "--training-set",
        "clip_b32",
        "--clip-model",
        "ViT-B-32",
        "--clip-weights",
        "laion2b_s34b_b79k",
        "--no-detector",
        "--no-progress",
    ]
    code = main(argv)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 1
    assert "laion2b_s34b_b79k" in output
    assert "local-dir:" in output or "checkpoint" in output
    assert "Traceback" not in output
