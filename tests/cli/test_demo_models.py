"""The shipped demo models say so in every model name they record (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from indexer.clip_tagger import ClipTagger
from indexer.detector import TINY_ARCH, ObjectDetector, build_model, save_detector
from indexer.models import (
    DEMO_CONFIG_KEY,
    DEMO_MODEL_PREFIX,
    TINY_CLIP,
    TINY_CLIP_DIR,
    TINY_CLIP_MODEL,
    TINY_DETECTOR,
    TINY_DETECTOR_CONFIG,
)
from indexer.taxonomy import Taxonomy, load_taxonomy


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


def test_the_shipped_configs_mark_the_models_as_demo() -> None:
    for config in (TINY_CLIP_DIR / "open_clip_config.json", TINY_DETECTOR_CONFIG):
        assert json.loads(config.read_text(encoding="utf-8"))[DEMO_CONFIG_KEY] is True


def test_the_shipped_clip_records_a_demo_model_name(taxonomy: Taxonomy, tmp_path: Path) -> None:
    tagger = ClipTagger("", TINY_CLIP, taxonomy, cache_dir=tmp_path)
    assert tagger.demo
    assert tagger.model_name == (
        f"{DEMO_MODEL_PREFIX}open_clip:{TINY_CLIP_MODEL}@{tagger.weights_hash[:8]}"
    )


def test_the_shipped_detector_records_a_demo_model_name(taxonomy: Taxonomy) -> None:
    detector = ObjectDetector(TINY_DETECTOR, taxonomy)
    assert detector.demo
    assert detector.model_name == (
        f"{DEMO_MODEL_PREFIX}autotag-tiny-detector@{detector.weights_hash[:8]}"
    )


def test_same_architecture_without_the_demo_flag_has_no_prefix(
    taxonomy: Taxonomy, tmp_path: Path
) -> None:
    labels = json.loads(TINY_DETECTOR_CONFIG.read_text(encoding="utf-8"))["labels"]
    torch.manual_seed(2)
    path = tmp_path / "own.safetensors"
    save_detector(build_model(TINY_ARCH, labels), path, arch=TINY_ARCH, labels=labels, name="own")
    detector = ObjectDetector(str(path), taxonomy)
    assert not detector.demo
    assert detector.model_name.startswith("own@")
    save_detector(
        build_model(TINY_ARCH, labels), path, arch=TINY_ARCH, labels=labels, name="own", demo=True
    )
    assert ObjectDetector(str(path), taxonomy).model_name.startswith(f"{DEMO_MODEL_PREFIX}own@")
