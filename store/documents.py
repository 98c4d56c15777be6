"""Turn an item (as users and models describe it) into the document Elasticsearch stores.

Fields that are derived rather than given are computed here and nowhere else: every
prediction's ``label_prefixes``, every object prediction's box geometry (``box_width``,
``box_height``, ``box_area``, ``relative_area``), every visible prediction's ``count_ranks``
and the item's ``autotag_status``. Every
writer (the indexer, imports, the review API, tests) passes items through :func:`prepare_item`
(or :func:`finish_item`) before indexing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, TypeGuard

from store import schema as f
from store.schema import ItemStatus, PredictionStatus, count_rank_group


def all_predictions(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Image and object predictions of an item, in one list."""
    return [*(item.get(f.IMAGE_PREDICTIONS) or ()), *(item.get(f.OBJECT_PREDICTIONS) or ())]


def derive_item_status(predictions: Iterable[Mapping[str, Any]]) -> list[str]:
    """The item's ``autotag_status`` values from its predictions' review states.

    ``pending`` if any prediction is pending; otherwise ``reviewed``, and also ``accepted`` when
    every prediction was accepted unchanged. An item without predictions has no status.
    """
    statuses = [p.get(f.PRED_STATUS, PredictionStatus.PENDING) for p in predictions]
    if not statuses:
        return []
    if PredictionStatus.PENDING in statuses:
        return [ItemStatus.PENDING.value]
    if all(s == PredictionStatus.ACCEPTED for s in statuses):
        return [ItemStatus.REVIEWED.value, ItemStatus.ACCEPTED.value]
    return [ItemStatus.REVIEWED.value]


def prepare_prediction(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``prediction`` with its derived fields filled in."""
    prepared = dict(prediction)
    prepared.setdefault(f.PRED_STATUS, PredictionStatus.PENDING.value)
    prepared[f.PRED_LABEL_PREFIXES] = f.label_prefixes(str(prepared[f.PRED_LABEL]))
    return prepared


def prepare_annotation(annotation: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ground-truth ``annotation`` with its ``label_prefixes``."""
    prepared = dict(annotation)
    prepared[f.PRED_LABEL_PREFIXES] = f.label_prefixes(str(prepared[f.PRED_LABEL]))
    return prepared


def prepare_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``item`` ready to index: derived fields computed, prediction lists present."""
    prepared = dict(item)
    for path in f.PREDICTION_PATHS:
        prepared[path] = [prepare_prediction(p) for p in item.get(path) or ()]
    for path in f.TRUTH_PATHS:
        if path in item:
            prepared[path] = [prepare_annotation(a) for a in item.get(path) or ()]
    return finish_item(prepared)


def box_geometry(bbox: Any, width: Any, height: Any) -> dict[str, float]:
    """``box_width``, ``box_height``, ``box_area`` and (with the image size) ``relative_area``.

    ``bbox`` is ``{x1, y1, x2, y2}`` in file pixels; nothing is derived from a missing or
    incomplete box, and ``relative_area`` is left out unless the image size is known (and is
    at most 1: a box reaching past the image's edges covers all of it).
    """
    if not isinstance(bbox, Mapping):
        return {}
    corners = [bbox.get(side) for side in ("x1", "y1", "x2", "y2")]
    numbers = [float(v) for v in corners if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(corners):
        return {}
    x1, y1, x2, y2 = numbers
    box_width, box_height = abs(x2 - x1), abs(y2 - y1)
    geometry = {
        f.PRED_BOX_WIDTH: box_width,
        f.PRED_BOX_HEIGHT: box_height,
        f.PRED_BOX_AREA: box_width * box_height,
    }
    if _is_number(width) and _is_number(height) and width > 0 and height > 0:
        # A box reaching past the image's edges still covers at most all of it.
        share = geometry[f.PRED_BOX_AREA] / (width * height)
        geometry[f.PRED_RELATIVE_AREA] = min(share, f.BOX_GEOMETRY_BOUNDS[f.PRED_RELATIVE_AREA][1])
    return geometry


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def with_count_ranks(predictions: Iterable[dict[str, Any]]) -> None:
    """Set (in place) every visible prediction's ``count_ranks`` among ``predictions``, the
    item's predictions of one kind, and drop stale ones (a prediction rejected since).

    A prediction gets, for each prefix of its label, its place from the best score among the
    visible predictions with that prefix, and among those of its training set too
    (``store.schema.count_rank_key``). A prediction without a score comes last, and equal
    scores take consecutive places, so places run 1..n without gaps.
    """
    visible: list[dict[str, Any]] = []
    for prediction in predictions:
        prediction.pop(f.PRED_COUNT_RANKS, None)
        if prediction.get(f.PRED_STATUS) != PredictionStatus.REJECTED:
            visible.append(prediction)
    if not visible:
        return
    taken: dict[str, int] = {}
    for prediction in sorted(visible, key=_best_first):
        groups = _rank_groups(prediction[f.PRED_LABEL], prediction.get(f.PRED_TRAINING_SET))
        keys = []
        for group in groups:
            place = taken[group] = taken.get(group, 0) + 1
            keys.append(f"{place}{group}")
        prediction[f.PRED_COUNT_RANKS] = keys


@lru_cache(maxsize=65536)
def _rank_groups(label: Any, training_set: Any) -> tuple[str, ...]:
    """The groups a prediction is placed in (``store.schema.count_rank_group``)."""
    groups = []
    for prefix in f.label_prefixes(str(label)):
        groups.append(count_rank_group(prefix, None))
        if isinstance(training_set, str):
            groups.append(count_rank_group(prefix, training_set))
    return tuple(groups)


def _best_first(prediction: Mapping[str, Any]) -> float:
    """Best score first, unscored predictions last (``sorted`` keeps ties in list order)."""
    score = prediction.get(f.PRED_SCORE)
    return -float(score) if _is_number(score) else math.inf


def finish_item(item: dict[str, Any]) -> dict[str, Any]:
    """Compute the item-level derived fields in place, for predictions already prepared.

    Box geometry is derived here rather than per prediction because ``relative_area`` needs
    the item's size; stale values (a box changed in review) are replaced. ``count_ranks`` need
    all the item's predictions of a kind.
    """
    width, height = item.get(f.WIDTH), item.get(f.HEIGHT)
    objects = []
    for prediction in item.get(f.OBJECT_PREDICTIONS) or ():
        prepared = {k: v for k, v in prediction.items() if k not in f.BOX_GEOMETRY}
        prepared.update(box_geometry(prepared.get(f.PRED_BBOX), width, height))
        objects.append(prepared)
    if f.OBJECT_PREDICTIONS in item:
        item[f.OBJECT_PREDICTIONS] = objects
        with_count_ranks(objects)
    if f.IMAGE_PREDICTIONS in item:
        images = [dict(prediction) for prediction in item[f.IMAGE_PREDICTIONS] or ()]
        item[f.IMAGE_PREDICTIONS] = images
        with_count_ranks(images)
    item[f.AUTOTAG_STATUS] = derive_item_status(all_predictions(item))
    return item
