"""What imported scores mean, and how they become autotag's [-1, 1] scores.

autotag's scores are signed: 0 is chance (CLIP's calibration puts a coin flip there), the score
bands of the query language (``search.fields.BAND_RANGES``: high >= 0.8, medium 0.5-0.8, low
0-0.5, negative < 0) are cut on that scale. A probability ``p`` is put on it as ``2p - 1``:
0.5 -> 0, 0.75 -> 0.5, 0.9 -> 0.8, 1 -> 1. Kept free of heavy imports: the command line reads
the choices from here.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Final


class ScoreScale(StrEnum):
    """The scale of an imported file's scores."""

    PROBABILITY = "probability"  # [0, 1], stored as 2p - 1
    SIGNED = "signed"  # [-1, 1], stored as given


# COCO detection results are detector confidences in [0, 1]; JSONL is autotag's own format
# (the shape `autotag index` writes), signed like everything in the index.
DEFAULT_COCO_SCALE: Final = ScoreScale.PROBABILITY
DEFAULT_JSONL_SCALE: Final = ScoreScale.SIGNED


def to_signed(score: Any, scale: ScoreScale) -> float:
    """``score`` on autotag's [-1, 1] scale; :class:`ValueError` when it is not on ``scale``."""
    if not isinstance(score, int | float) or isinstance(score, bool) or math.isnan(score):
        raise ValueError(f"score {score!r} is not a number")
    value = float(score)
    if scale is ScoreScale.PROBABILITY:
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"score {score!r} is not a probability in [0, 1] (--score-scale probability; "
                "--score-scale signed reads scores in [-1, 1])"
            )
        return 2.0 * value - 1.0
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"score {score!r} is not in [-1, 1] (--score-scale signed)")
    return value
