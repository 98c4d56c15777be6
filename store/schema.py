"""The shape of an item document: field names and vocabularies shared by every stage.

The index mapping (``store.mapping``), the translator and the reference evaluator all
refer to fields through these names, so a rename happens in exactly one place.
"""

from __future__ import annotations

import math
from enum import StrEnum
from functools import lru_cache
from typing import Final


class PredictionKind(StrEnum):
    """Which nested list a prediction lives in."""

    IMAGE = "image"
    OBJECT = "object"

    @property
    def path(self) -> str:
        """The nested field holding predictions of this kind."""
        return IMAGE_PREDICTIONS if self is PredictionKind.IMAGE else OBJECT_PREDICTIONS

    @property
    def truth_path(self) -> str:
        """The nested field holding imported ground truth of this kind."""
        return TRUTH_IMAGES if self is PredictionKind.IMAGE else TRUTH_OBJECTS


class PredictionStatus(StrEnum):
    """Review state of one prediction."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    MODIFIED = "modified"
    REJECTED = "rejected"


class ItemStatus(StrEnum):
    """Item-level ``autotag_status`` values, derived from the item's predictions."""

    PENDING = "pending"
    REVIEWED = "reviewed"
    ACCEPTED = "accepted"


# Item fields.
ITEM_ID: Final = "item_id"
DATASET: Final = "dataset"
URI: Final = "uri"
WIDTH: Final = "width"
HEIGHT: Final = "height"
UPLOADED_AT: Final = "uploaded_at"
UPDATED_AT: Final = "updated_at"
METADATA: Final = "metadata"
AUTOTAG_STATUS: Final = "autotag_status"
REVIEW_HISTORY: Final = "review_history"
# The item's image embedding (a unit vector; which model made it is in the index's _meta).
EMBEDDING: Final = "embedding"
# Training sets that have tagged this item: "already tagged?" must not depend on whether the
# model happened to predict anything.
TAGGED_BY: Final = "tagged_by"

# The two nested prediction lists.
IMAGE_PREDICTIONS: Final = "image_predictions"
OBJECT_PREDICTIONS: Final = "object_predictions"
PREDICTION_PATHS: Final = (IMAGE_PREDICTIONS, OBJECT_PREDICTIONS)

# Prediction fields (relative to the nested path).
PRED_ID: Final = "id"
PRED_LABEL: Final = "label"
# Every ``_``-boundary prefix of the label ("weather_clear" -> "weather", "weather_clear"),
# computed at write time so ``image_prefix:weather`` is a term lookup, not a prefix scan.
PRED_LABEL_PREFIXES: Final = "label_prefixes"
PRED_SCORE: Final = "score"
PRED_TRAINING_SET: Final = "training_set"
PRED_STATUS: Final = "status"
PRED_MODEL: Final = "model"
PRED_CREATED_AT: Final = "created_at"
PRED_ORIGINAL_LABEL: Final = "original_label"
PRED_BBOX: Final = "bbox"
# Box geometry of an object prediction, derived from ``bbox`` when the item is written:
# width, height and area in file pixels, and the box's share of the image (0..1, only when the
# item's width and height are known).
PRED_BOX_WIDTH: Final = "box_width"
PRED_BOX_HEIGHT: Final = "box_height"
PRED_BOX_AREA: Final = "box_area"
PRED_RELATIVE_AREA: Final = "relative_area"
BOX_GEOMETRY: Final = (PRED_BOX_WIDTH, PRED_BOX_HEIGHT, PRED_BOX_AREA, PRED_RELATIVE_AREA)
# The values each can take: sizes are never negative, the share of the image is capped at 1.
BOX_GEOMETRY_BOUNDS: Final = {
    PRED_BOX_WIDTH: (0.0, math.inf),
    PRED_BOX_HEIGHT: (0.0, math.inf),
    PRED_BOX_AREA: (0.0, math.inf),
    PRED_RELATIVE_AREA: (0.0, 1.0),
}

# Derived when an item is written (store.documents) and searched, never given: every visible
# (not rejected) prediction's places among the item's visible predictions of its kind that share
# a label prefix, and among those that share a prefix and a training set, counted from the best
# score (see ``count_rank_key``). "At least n cars scoring >= 0.8" is "the n-th best car scores
# >= 0.8": one nested term and range, which Elasticsearch caches like any filter, where counting
# every item's cars cannot be cached (search.translate).
PRED_COUNT_RANKS: Final = "count_ranks"


def count_rank_key(place: int, prefix: str, training_set: str | None) -> str:
    """One ``count_ranks`` value: ``3:3:car`` is the third-best ``car*`` prediction,
    ``1:3:car@model_v2`` the best one of training set ``model_v2``.

    The prefix's length is written out so that no label or training-set text can make two
    keys alike.

    >>> count_rank_key(3, "car", None)
    '3:3:car'
    >>> count_rank_key(1, "car", "model_v2")
    '1:3:car@model_v2'
    """
    return f"{place}{count_rank_group(prefix, training_set)}"


@lru_cache(maxsize=65536)
def count_rank_group(prefix: str, training_set: str | None) -> str:
    """The part of a ``count_ranks`` key after the place: which predictions it places among."""
    group = f":{len(prefix)}:{prefix}"
    return group if training_set is None else f"{group}@{training_set}"


# For modified object predictions: the model's box, kept the first time a reviewer moves it
# (stored, not searched), so evaluation can judge what the model said.
PRED_ORIGINAL_BBOX: Final = "original_bbox"

# Imported ground truth: stored beside the predictions, never mixed with them. One nested list
# per kind; every annotation names its source ("coco_val"), and the item lists the sources
# that annotated it (also those that found nothing on it: an empty image is truth too).
TRUTH_IMAGES: Final = "truth_images"
TRUTH_OBJECTS: Final = "truth_objects"
TRUTH_PATHS: Final = (TRUTH_IMAGES, TRUTH_OBJECTS)
TRUTH_SOURCE: Final = "truth_source"
# Annotation fields (relative to the nested path); ``id``, ``label``, ``label_prefixes`` and
# ``bbox`` are named as on predictions.
ANNOTATION_SOURCE: Final = "source"
ANNOTATION_CROWD: Final = "iscrowd"

SCORE_MIN: Final = -1.0
SCORE_MAX: Final = 1.0


def label_prefixes(label: str) -> list[str]:
    """Every ``L`` such that ``label`` equals ``L`` or continues it at a ``_`` boundary.

    ``image_prefix:L`` matches a label exactly when ``L`` is in this list, i.e. when
    ``label == L or label.startswith(L + "_")``.

    >>> label_prefixes("traffic_sign_stop")
    ['traffic', 'traffic_sign', 'traffic_sign_stop']
    """
    return list(_label_prefixes(label))


@lru_cache(maxsize=65536)
def _label_prefixes(label: str) -> tuple[str, ...]:
    # Labels come from a small taxonomy, so nearly every call is a cache hit.
    prefixes = []
    cut = label.find("_", 1)
    while cut != -1:
        prefixes.append(label[:cut])
        cut = label.find("_", cut + 1)
    prefixes.append(label)
    return tuple(prefixes)


def label_matches_prefix(label: str, prefix: str) -> bool:
    """The reference definition of ``*_prefix:`` label matching (without a trailing ``*``)."""
    return label == prefix or label.startswith(prefix + "_")
