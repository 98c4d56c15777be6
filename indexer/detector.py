"""Object detection with torchvision detection models; labels mapped onto the taxonomy.

Weights are given as one of:

- ``torchvision:<arch>``: the architecture's default COCO weights (e.g.
  ``torchvision:fasterrcnn_mobilenet_v3_large_320_fpn``), from the torch hub cache when present,
  downloaded otherwise; with no network it fails at once with
  :class:`~embeddings.weights.WeightsUnavailableError`;
- ``torchvision:<arch>:<file>``: the same with a local copy of that checkpoint file;
- ``<file>.safetensors`` next to ``<file>.json`` (``arch``, ``labels``, ``kwargs``, ``name``): a
  model saved by :func:`save_detector`, e.g. the shipped tiny detector of the synthetic world
  (its config says ``"demo": true``, so its recorded model name starts with ``demo:``);
- ``random:<arch>``: untrained weights (seeded), for tests and benchmarks; the tiny
  architecture gets the shipped tiny detector's class names.

Boxes come back in pixel coordinates of the original image, scores in [0, 1].
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.transforms.functional import pil_to_tensor

from embeddings.weights import (
    WeightsUnavailableError,
    ensure_download_possible,
    file_sha256,
    state_dict_sha256,
)
from indexer.models import DEMO_CONFIG_KEY, DEMO_MODEL_PREFIX, TINY_DETECTOR_CONFIG
from indexer.taxonomy import Taxonomy

TINY_ARCH = "autotag_tiny_fasterrcnn"
BACKGROUND = "__background__"
_HOW_TO_PROVIDE = (
    "Provide the weights locally instead: download the checkpoint file on a machine with "
    "internet and pass `torchvision:<arch>:<file>`, or copy it into the torch hub cache "
    "({cache}), or use a model saved as `<file>.safetensors` + `<file>.json`. The shipped tiny "
    "detector (indexer.models.TINY_DETECTOR, `--demo-models`) is a demo trained on synthetic "
    "scenes only."
)

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected object: taxonomy label, score in [0, 1], ``(x1, y1, x2, y2)`` in pixels."""

    label: str
    score: float
    bbox: BBox


def preprocess_image(image: Image.Image) -> torch.Tensor:
    """PIL image -> ``(3, H, W)`` uint8 tensor (cheap to pass between processes)."""
    tensor: torch.Tensor = pil_to_tensor(image.convert("RGB"))
    return tensor


class TinyBackbone(nn.Module):
    """A five-layer convolutional feature extractor at stride 8 (for the synthetic world)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.out_channels = width

        def block(c_in: int, c_out: int, stride: int, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(
                c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False
            )
            return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(3, 16, 2),
            *block(16, 32, 2),
            *block(32, width, 2),
            *block(width, width, 1),
            *block(width, width, 1, dilation=2),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return OrderedDict([("0", self.body(x))])


def build_tiny_detector(
    num_classes: int, *, width: int = 64, min_size: int = 128, max_size: int = 192
) -> FasterRCNN:
    """A Faster R-CNN of about a million parameters for small, simple scenes."""
    anchors = AnchorGenerator(sizes=((8, 14, 24, 40),), aspect_ratios=((0.5, 1.0, 2.5),))
    return FasterRCNN(
        TinyBackbone(width),
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        # scenes hold a handful of objects: small samples keep CPU training cheap
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=150,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(width * 7 * 7, 128),
        box_predictor=FastRCNNPredictor(128, num_classes),
        box_score_thresh=0.01,
        box_detections_per_img=50,
    )


def build_model(arch: str, labels: list[str], kwargs: dict[str, Any] | None = None) -> nn.Module:
    """An untrained model of ``arch`` predicting ``labels`` (index 0 is the background)."""
    if arch == TINY_ARCH:
        tiny: nn.Module = build_tiny_detector(len(labels), **(kwargs or {}))
        return tiny
    model: nn.Module = torchvision.models.get_model(
        arch, weights=None, weights_backbone=None, num_classes=len(labels), **(kwargs or {})
    )
    return model


def save_detector(
    model: nn.Module,
    path: Path,
    *,
    arch: str,
    labels: list[str],
    name: str,
    kwargs: dict[str, Any] | None = None,
    half: bool = True,
    demo: bool = False,
) -> None:
    """Write ``path`` (.safetensors, fp16 by default) and its ``.json`` config next to it.

    ``demo``: weights that only know the synthetic world (their model names get ``demo:``).
    """
    state = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path))
    config: dict[str, Any] = {"arch": arch, "labels": labels, "name": name, "kwargs": kwargs or {}}
    if demo:
        config[DEMO_CONFIG_KEY] = True
    Path(path).with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")


@dataclass(frozen=True)
class LoadedDetector:
    model: nn.Module
    labels: list[str]
    name: str
    weights_hash: str
    demo: bool = False  # the config says these are demo weights (synthetic world only)


def load_detector(weights: str) -> LoadedDetector:
    """Build a detection model from any of the specifications in the module docstring."""
    if weights.startswith("random:"):
        arch = weights.removeprefix("random:")
        labels = _coco_categories(arch) if arch != TINY_ARCH else _tiny_default_labels()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(arch, labels)
        return LoadedDetector(model, labels, arch, state_dict_sha256(model))

    if weights.startswith("torchvision:"):
        arch, _, file = weights.removeprefix("torchvision:").partition(":")
        enum = _default_weights(arch)
        labels = list(enum.meta["categories"])
        checkpoint = Path(file).expanduser() if file else _hub_cached(enum.url)
        if file and not checkpoint.is_file():
            raise WeightsUnavailableError(f"weights file not found: {checkpoint}")
        if checkpoint.is_file():
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        else:
            how = _HOW_TO_PROVIDE.format(cache=checkpoint.parent)
            ensure_download_possible(urlparse(enum.url).netloc, f"{arch} weights", how)
            try:
                state = enum.get_state_dict(progress=False, check_hash=True)
            except Exception as exc:
                raise WeightsUnavailableError(
                    f"downloading {arch} weights failed: {exc}. {how}"
                ) from exc
        model = build_model(arch, labels)
        model.load_state_dict(state)
        digest = file_sha256(checkpoint) if checkpoint.is_file() else state_dict_sha256(model)
        return LoadedDetector(model, labels, f"torchvision:{arch}", digest)

    path = Path(weights).expanduser()
    config_path = path.with_suffix(".json")
    if path.suffix != ".safetensors":
        raise WeightsUnavailableError(
            f"unrecognised detector weights {weights!r}: expected torchvision:<arch>[:<file>], "
            "random:<arch> or <file>.safetensors with <file>.json"
        )
    if not path.is_file() or not config_path.is_file():
        raise WeightsUnavailableError(f"detector weights need {path} and {config_path}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    labels = [str(label) for label in config["labels"]]
    model = build_model(str(config["arch"]), labels, config.get("kwargs"))
    model.load_state_dict(load_file(str(path)))
    name = str(config.get("name", path.stem))
    demo = config.get(DEMO_CONFIG_KEY) is True
    return LoadedDetector(model, labels, name, file_sha256(path), demo=demo)


def _default_weights(arch: str) -> Any:
    try:
        return torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ValueError(f"unknown torchvision detection model {arch!r}") from exc


def _coco_categories(arch: str) -> list[str]:
    return list(_default_weights(arch).meta["categories"])


def _tiny_default_labels() -> list[str]:
    """The shipped tiny detector's class names, as its config records them."""
    config = json.loads(TINY_DETECTOR_CONFIG.read_text(encoding="utf-8"))
    return [str(label) for label in config["labels"]]


def _hub_cached(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


class ObjectDetector:
    """A batch of preprocessed images -> per image, the detections that map onto the taxonomy."""

    def __init__(
        self,
        weights: str,
        taxonomy: Taxonomy,
        *,
        device: str = "cpu",
        score_threshold: float = 0.5,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.taxonomy = taxonomy
        self.device = torch.device(device)
        self.score_threshold = score_threshold
        loaded = load_detector(weights)
        self._model = loaded.model.to(self.device).eval()
        self.labels = loaded.labels
        self.weights_hash = loaded.weights_hash
        self.demo = loaded.demo
        prefix = DEMO_MODEL_PREFIX if loaded.demo else ""
        self.model_name = f"{prefix}{loaded.name}@{loaded.weights_hash[:8]}"
        # detector class index -> taxonomy label; unmapped classes are dropped
        self._label_map = {
            i: taxonomy.object_classes[name]
            for i, name in enumerate(self.labels)
            if name in taxonomy.object_classes
        }
        self.preprocessor = preprocess_image

    @property
    def input_min_side(self) -> int | None:
        """The shorter side the model resizes images to (``None``: unknown, decode in full)."""
        transform = getattr(self._model, "transform", None)
        if not isinstance(transform, GeneralizedRCNNTransform):
            return None
        return int(max(transform.min_size))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One image -> ``(3, H, W)`` uint8 tensor (same as :attr:`preprocessor`)."""
        return preprocess_image(image)

    @torch.inference_mode()
    def predict(self, batch: list[torch.Tensor]) -> list[list[Detection]]:
        """Per image: detections above the threshold, highest score first."""
        images = [self._as_float(image) for image in batch]
        if not images:
            return []
        outputs = self._model(images)
        return [self._detections(output) for output in outputs]

    def _as_float(self, image: torch.Tensor) -> torch.Tensor:
        image = image.to(self.device, non_blocking=True)
        return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()

    def _detections(self, output: dict[str, torch.Tensor]) -> list[Detection]:
        found = []
        boxes, scores, labels = (output[k].cpu().tolist() for k in ("boxes", "scores", "labels"))
        for box, score, index in zip(boxes, scores, labels, strict=True):
            label = self._label_map.get(int(index))
            if label is None or score < self.score_threshold:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            found.append(Detection(label, min(1.0, max(0.0, float(score))), (x1, y1, x2, y2)))
        found.sort(key=lambda d: d.score, reverse=True)
        return found
