"""A synthetic driving world with known ground truth, for training and checking the tiny models.

``generate(n, seed)`` yields ``(PIL image, GroundTruth)``; ``write_dataset`` puts the same on disk.
"""

from __future__ import annotations

from indexer.synthetic.dataset import read_ground_truth, write_dataset
from indexer.synthetic.world import (
    DETECTOR_LABELS,
    OBJECT_LABELS,
    SCENES,
    TIMES_OF_DAY,
    WEATHERS,
    GroundTruth,
    SceneSpec,
    generate,
    render_scene,
)

__all__ = [
    "DETECTOR_LABELS",
    "OBJECT_LABELS",
    "SCENES",
    "TIMES_OF_DAY",
    "WEATHERS",
    "GroundTruth",
    "SceneSpec",
    "generate",
    "read_ground_truth",
    "render_scene",
    "write_dataset",
]
