"""ObjectDetector with random weights: outputs, label map, thresholds, saving and load errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from embeddings.weights import WeightsUnavailableError
from indexer.detector import (
    BACKGROUND,
    TINY_ARCH,
    Detection,
    ObjectDetector,
    build_model,
    load_detector,
    save_detector,
)
from indexer.models import TINY_DETECTOR_CONFIG
from indexer.synthetic import DETECTOR_LABELS, generate
from indexer.synthetic.train_detector import LABELS as TRAINED_LABELS
from indexer.taxonomy import Taxonomy, load_taxonomy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="module")
def scenes() -> list[Image.Image]:
    return [image for image, _ in generate(3, seed=11)]


def check(
    detections: list[Detection], image: Image.Image, taxonomy: Taxonomy, floor: float
) -> None:
    width, height = image.size
    for d in detections:
        assert d.label in taxonomy.object_labels
        assert floor <= d.score <= 1.0
        x1, y1, x2, y2 = d.bbox
        assert 0 <= x1 <= x2 <= width
        assert 0 <= y1 <= y2 <= height
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)


def test_tiny_architecture_with_random_weights(
    taxonomy: Taxonomy, scenes: list[Image.Image]
) -> None:
    detector = ObjectDetector(f"random:{TINY_ARCH}", taxonomy, score_threshold=0.0)
    batch = [detector.preprocess(image) for image in scenes]
    assert batch[0].dtype == torch.uint8
    assert batch[0].shape == (3, 128, 192)
    results = detector.predict(batch)
    assert len(results) == len(scenes)
    assert any(results), "with a zero threshold an untrained model still proposes boxes"
    for detections, image in zip(results, scenes, strict=True):
        check(detections, image, taxonomy, 0.0)
    assert detector.predict([]) == []
    assert detector.model_name.startswith(f"{TINY_ARCH}@")


def test_shipped_tiny_labels_are_the_synthetic_worlds() -> None:
    # Production reads the tiny detector's class names from its shipped config, never from the
    # synthetic world; the world (and the training script that wrote the config) must agree.
    shipped = json.loads(TINY_DETECTOR_CONFIG.read_text(encoding="utf-8"))["labels"]
    assert shipped == [BACKGROUND, *DETECTOR_LABELS.values()]
    assert shipped == TRAINED_LABELS
    assert load_detector(f"random:{TINY_ARCH}").labels == shipped


def test_threshold_filters_scores(taxonomy: Taxonomy, scenes: list[Image.Image]) -> None:
    detector = ObjectDetector(f"random:{TINY_ARCH}", taxonomy, score_threshold=0.25)
    for detections, image in zip(
        detector.predict([detector.preprocess(i) for i in scenes]), scenes, strict=True
    ):
        check(detections, image, taxonomy, 0.25)
    with pytest.raises(ValueError, match="score_threshold"):
        ObjectDetector(f"random:{TINY_ARCH}", taxonomy, score_threshold=1.5)


def test_coco_architecture_maps_labels_onto_the_taxonomy(taxonomy: Taxonomy) -> None:
    # weights=None, weights_backbone=None: the real architecture, untrained
    detector = ObjectDetector(
        "random:fasterrcnn_mobilenet_v3_large_320_fpn", taxonomy, score_threshold=0.0
    )
    assert detector.labels[1] == "person"
    assert detector._label_map[detector.labels.index("person")] == "pedestrian"
    assert detector._label_map[detector.labels.index("stop sign")] == "traffic_sign_stop"
    assert detector.labels.index("giraffe") not in detector._label_map
    image = Image.new("RGB", (200, 150), "gray")
    [detections] = detector.predict([detector.preprocess(image)])
    check(detections, image, taxonomy, 0.0)


def test_saved_detector_round_trips(
    taxonomy: Taxonomy, scenes: list[Image.Image], tmp_path: Path
) -> None:
    labels = ["__background__", "synthetic_car", "synthetic_pedestrian", "synthetic_stop_sign"]
    torch.manual_seed(1)
    model = build_model(TINY_ARCH, labels).eval()
    path = tmp_path / "det.safetensors"
    save_detector(model, path, arch=TINY_ARCH, labels=labels, name="det", half=False)
    assert path.with_suffix(".json").is_file()
    detector = ObjectDetector(str(path), taxonomy, score_threshold=0.0)
    assert detector.model_name.startswith("det@")
    batch = [detector.preprocess(image) for image in scenes[:1]]
    with torch.inference_mode():
        expected = model([batch[0].float() / 255])[0]
    [got] = detector.predict(batch)
    assert len(got) == len(expected["scores"])
    if got:
        assert got[0].score == pytest.approx(float(expected["scores"][0]), abs=1e-5)


def test_coco_weights_without_network_fail_fast(taxonomy: Taxonomy) -> None:
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="torchvision:<arch>:<file>"):
        ObjectDetector("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", taxonomy)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ("/nonexistent/det.safetensors", WeightsUnavailableError, "need"),
        ("model.onnx", WeightsUnavailableError, "unrecognised"),
        (
            "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn:/nope.pth",
            WeightsUnavailableError,
            "not found",
        ),
        ("torchvision:no_such_model", ValueError, "unknown torchvision"),
    ],
)
def test_loading_errors(
    taxonomy: Taxonomy, weights: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ObjectDetector(weights, taxonomy)
