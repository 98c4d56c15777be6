"""Turn an item (as users and models describe it) into the document Elasticsearch stores.

Fields that are derived rather than given are computed here and nowhere else: every
prediction's ``label_prefixes`` and the item's ``autotag_status``. Every writer (the indexer,
imports, the review API, tests) passes items through :func:`prepare_item` before indexing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from store import schema as f
from store.schema import ItemStatus, PredictionStatus


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


def prepare_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``item`` ready to index: derived fields computed, prediction lists present."""
    prepared = dict(item)
    for path in f.PREDICTION_PATHS:
        prepared[path] = [prepare_prediction(p) for p in item.get(path) or ()]
    return finish_item(prepared)


def finish_item(item: dict[str, Any]) -> dict[str, Any]:
    """Compute the item-level derived fields in place, for predictions already prepared."""
    item[f.AUTOTAG_STATUS] = derive_item_status(all_predictions(item))
    return item
