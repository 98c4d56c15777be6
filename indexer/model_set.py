"""Load the models of a :class:`store.model_choice.ModelSet`, as ``autotag index`` loads them.

``demo`` means the shipped tiny models (:mod:`indexer.models`); any other set names weights in
the forms :class:`~indexer.clip_tagger.ClipTagger` and :class:`~indexer.detector.ObjectDetector`
accept. Loading fails with :class:`~indexer.model_weights.WeightsUnavailableError` (or
``ValueError`` for an unknown architecture) before any image is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import models as shipped
from indexer.taxonomy import Taxonomy
from store.model_choice import ModelSet

if TYPE_CHECKING:
    from indexer.clip_tagger import ClipTagger
    from indexer.detector import ObjectDetector


@dataclass(frozen=True)
class LoadedModels:
    """The models of a set, ready to run (``None`` for one the set leaves out)."""

    clip: ClipTagger | None
    detector: ObjectDetector | None


def load_model_set(
    models: ModelSet, taxonomy: Taxonomy, *, device: str, cache_dir: Path | None = None
) -> LoadedModels:
    """Build the CLIP tagger and the detector of ``models`` on ``device``."""
    clip: ClipTagger | None = None
    detector: ObjectDetector | None = None
    clip_weights = shipped.TINY_CLIP if models.demo else models.clip_weights
    detector_weights = shipped.TINY_DETECTOR if models.demo else models.detector_weights
    if clip_weights:
        from indexer.clip_tagger import ClipTagger, default_cache_dir

        clip = ClipTagger(
            "" if models.demo else models.clip_model or "",
            clip_weights,
            taxonomy,
            device=device,
            cache_dir=default_cache_dir(cache_dir),
        )
    if detector_weights:
        from indexer.detector import ObjectDetector

        detector = ObjectDetector(
            detector_weights, taxonomy, device=device, score_threshold=models.score_threshold
        )
    return LoadedModels(clip, detector)
