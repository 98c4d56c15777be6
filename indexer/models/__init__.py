"""Shipped model weights: tiny demo models trained on the synthetic world (``indexer/synthetic``).

The constants are weight specifications as :class:`indexer.clip_tagger.ClipTagger` and
:class:`indexer.detector.ObjectDetector` accept them. The models know nothing about real photos:
their configs say ``"demo": true``, and every model name they record on a prediction starts with
:data:`DEMO_MODEL_PREFIX` (``demo:open_clip:autotag-tiny@…``, ``demo:autotag-tiny-detector@…``).
"""

from __future__ import annotations

from pathlib import Path

from embeddings.weights import DEMO_CONFIG_KEY, DEMO_MODEL_PREFIX

MODELS_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = MODELS_DIR / "configs"

__all__ = [
    "CONFIGS_DIR",
    "DEMO_CONFIG_KEY",
    "DEMO_MODEL_PREFIX",
    "MODELS_DIR",
    "TINY_CLIP",
    "TINY_CLIP_DIR",
    "TINY_CLIP_MODEL",
    "TINY_DETECTOR",
    "TINY_DETECTOR_CONFIG",
    "TINY_DETECTOR_PATH",
]

TINY_CLIP_MODEL = "autotag-tiny"
TINY_CLIP_DIR = MODELS_DIR / "autotag-tiny-clip"
TINY_CLIP = f"local-dir:{TINY_CLIP_DIR}"

TINY_DETECTOR_PATH = MODELS_DIR / "autotag-tiny-detector.safetensors"
TINY_DETECTOR = str(TINY_DETECTOR_PATH)
# Its config (architecture, class names) as ``indexer.detector.save_detector`` wrote it.
TINY_DETECTOR_CONFIG = TINY_DETECTOR_PATH.with_suffix(".json")
