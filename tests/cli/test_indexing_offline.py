"""`autotag index` offline: no silent demo models on real photos, real weights from a checkpoint
file, real photos with the demo models when asked for, and a clear failure when pretrained
weights would need a download."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import skimage
import torch
from elasticsearch import Elasticsearch

from cli.main import main
from embeddings.weights import file_sha256
from indexer.clip_tagger import LOCAL_DIR_PREFIX  # importing it registers autotag-tiny
from indexer.models import DEMO_MODEL_PREFIX, TINY_CLIP_MODEL
from indexer.taxonomy import load_taxonomy
from store.image_roots import roots_in_answer, roots_index_name, roots_search_body

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "cache"))


def _photos(folder: Path, names: tuple[str, ...] = PHOTOS) -> Path:
    folder.mkdir()
    data = Path(skimage.__file__).parent / "data"
    for name in names:
        (folder / name).write_bytes((data / name).read_bytes())
    return folder


@pytest.mark.usefixtures("offline")
def test_real_photos_without_a_model_choice_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path / "photos")
    argv = ["index", str(photos), "--training-set", "x", "--no-progress"]
    argv += ["--failures-file", str(tmp_path / "f.jsonl")]
    code = main([*argv, "--index", "must-not-be-touched"])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2
    assert "choose the models to tag with (no CLIP weights and no detector weights given)" in (
        output
    )
    for option in ("--clip-weights", f"{LOCAL_DIR_PREFIX}FOLDER", "--demo-models", "--no-detector"):
        assert option in output
    assert "ViT-B-32" in output
    assert "synthetic driving scenes only" in output
    assert "Traceback" not in output
    assert "items seen" not in output  # refused before anything ran


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--no-clip"], "(no detector weights given)"),
        (["--no-detector"], "(no CLIP weights given)"),
        (["--demo-models", "--clip-weights", "x.pt"], "drop --clip-weights or --demo-models"),
        (["--clip-weights", "x.pt", "--no-detector"], "--clip-model ARCH is required"),
    ],
)
def test_half_a_model_choice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    photos = _photos(tmp_path / "photos", ("coffee.png",))
    assert main(["index", str(photos), "--training-set", "x", *extra]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.es
@pytest.mark.usefixtures("offline")
def test_index_with_a_local_open_clip_checkpoint_file(
    tmp_path: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's real-weights command, with a small architecture for speed: an open_clip
    state_dict saved as a file, as the laion checkpoints of ViT-B-32 are."""
    torch.manual_seed(3)
    model = open_clip.create_model(TINY_CLIP_MODEL, pretrained=None)
    checkpoint = tmp_path / "models" / "open_clip_pytorch_model.bin"
    checkpoint.parent.mkdir()
    torch.save(model.state_dict(), checkpoint)
    photos = _photos(tmp_path / "photos", ("coffee.png", "chelsea.png"))
    monkeypatch.setenv("ES_URL", es_url)
    argv = ["index", str(photos), "--training-set", "real_v1", "--index", item_index]
    argv += ["--clip-model", TINY_CLIP_MODEL, "--clip-weights", str(checkpoint), "--no-detector"]
    argv += ["--no-progress", "--workers", "0", "--failures-file", str(tmp_path / "f.jsonl")]
    assert main(argv) == 0
    es.indices.refresh(index=item_index)
    doc = es.get(index=item_index, id="photos/coffee.png")["_source"]
    assert {p["label"] for p in doc["image_predictions"]} == set(load_taxonomy().image_labels)
    expected = f"open_clip:{TINY_CLIP_MODEL}@{file_sha256(checkpoint)[:8]}"
    assert {p["model"] for p in doc["image_predictions"]} == {expected}  # no demo prefix
    assert doc.get("object_predictions", []) == []
    # The folder is recorded on the index, so the API serves its images.
    recorded = es.search(index=roots_index_name(item_index), body=roots_search_body()).body
    assert roots_in_answer(recorded) == [str(photos.resolve())]


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
    photos = _photos(tmp_path / "photos")
    monkeypatch.setenv("ES_URL", es_url)
    argv = [
        "index",
        str(photos),
        "--demo-models",  # asked for: never the default on real photos
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
    models = {p["model"] for p in doc["image_predictions"] + doc.get("object_predictions", [])}
    assert models
    assert all(model.startswith(DEMO_MODEL_PREFIX) for model in models)
    assert f"{DEMO_MODEL_PREFIX}open_clip:{TINY_CLIP_MODEL}@" in " ".join(models)


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
