"""The model catalogue: parsing the models file, unknown names, and weights that cannot be had."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.model_choice import (
    DEMO,
    CatalogueError,
    ModelSet,
    UnknownModelsError,
    choose,
    load_catalogue,
    weight_problems,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_without_a_models_file_only_the_demo_models_exist() -> None:
    catalogue = load_catalogue(None)
    assert list(catalogue) == [DEMO]
    assert catalogue[DEMO].demo
    assert weight_problems(catalogue[DEMO]) == []


def test_entries_of_the_models_file_are_model_sets(tmp_path: Path) -> None:
    checkpoint = tmp_path / "clip.bin"
    checkpoint.write_bytes(b"x")
    path = _write(
        tmp_path,
        f"""
[vitb32]
clip_model = "ViT-B-32"
clip_weights = "{checkpoint}"
score_threshold = 0.6

[boxes]
detector_weights = "random:fasterrcnn_mobilenet_v3_large_320_fpn"
""",
    )
    catalogue = load_catalogue(path)
    assert sorted(catalogue) == ["boxes", DEMO, "vitb32"]
    assert catalogue["vitb32"] == ModelSet(
        "vitb32", "ViT-B-32", str(checkpoint), None, score_threshold=0.6
    )
    assert weight_problems(catalogue["vitb32"]) == []
    assert weight_problems(catalogue["boxes"]) == []
    assert ModelSet.from_doc(catalogue["vitb32"].to_doc()) == catalogue["vitb32"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[demo]\nclip_model = 'x'\n", "built in"),
        ("[a]\nclip_weight = 'x'\n", "unknown keys ['clip_weight']"),
        ("[a]\nscore_threshold = 0.5\n", "neither clip_weights nor detector_weights"),
        ("[a]\ndetector_weights = 'random:x'\nscore_threshold = 2\n", "not in [0, 1]"),
        ("[a]\ndetector_weights = 3\n", "must be strings"),
        ("not toml = = 1", "models file"),
    ],
)
def test_a_malformed_models_file_says_what_is_wrong(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(CatalogueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_catalogue(_write(tmp_path, text))


def test_an_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownModelsError) as raised:
        choose(load_catalogue(None), "dem")
    assert raised.value.closest == [DEMO]
    assert "did you mean 'demo'?" in str(raised.value)


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        (ModelSet("a", "ViT-B-32", "/nowhere/clip.bin"), "CLIP weights file not found"),
        (ModelSet("a", "ViT-B-32", "laion2b_s34b_b79k"), "pretrained tag"),
        (ModelSet("a", None, "/nowhere/clip.bin"), "clip_model"),
        (ModelSet("a", None, "local-dir:/nowhere"), "no open_clip_config.json"),
        (ModelSet("a", detector_weights="torchvision:fasterrcnn_resnet50_fpn"), "download"),
        (ModelSet("a", detector_weights="torchvision:x:/nowhere.pth"), "not found"),
        (ModelSet("a", detector_weights="/nowhere/d.safetensors"), "not found"),
        (ModelSet("a", detector_weights="weights.onnx"), "expected torchvision:ARCH:FILE"),
    ],
)
def test_weights_that_cannot_be_had_are_named(models: ModelSet, problem: str) -> None:
    problems = weight_problems(models)
    assert problems
    assert problem in " ".join(problems)


def test_a_local_dir_needs_a_config_and_weights(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    models = ModelSet("a", clip_weights=f"local-dir:{folder}")
    assert "no weights file" in " ".join(weight_problems(models))
    (folder / "open_clip_model.safetensors").write_bytes(b"x")
    assert weight_problems(models) == []
