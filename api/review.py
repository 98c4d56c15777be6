"""The review workflow: accept, reject or modify one prediction of an item, without lost updates.

A review reads the item with its ``_seq_no``/``_primary_term``, applies the change in Python,
recomputes the derived fields through :func:`store.documents.prepare_item`, appends an entry
to ``review_history`` and writes the item back only if nobody wrote it in between
(``if_seq_no``/``if_primary_term``). On a lost race it re-reads and re-applies, a bounded number
of times with jittered backoff, then answers 409. A client that passes the revision it saw gets
409 at once when the item moved on, so it can show the reviewer the new state.

Accepting a prediction that was modified earlier keeps it ``modified`` (the reviewer accepts
the modified version): ``autotag_status = "accepted"`` stays reserved for items whose
predictions were all accepted unchanged. ``original_label`` records the model's label the first
time a prediction is modified and is never overwritten.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import elasticsearch
from elasticsearch import AsyncElasticsearch

from api.errors import ApiError
from api.models import BBox, ModifyRequest, ReviewAction, ReviewRequest
from api.settings import ApiKey, Settings
from store import schema as f
from store.clock import utc_iso
from store.documents import prepare_item
from store.schema import PredictionKind, PredictionStatus

# Elasticsearch refuses longer document ids; such an item cannot exist.
_MAX_ID_BYTES: Final = 512
_SNAPSHOT_FIELDS: Final = (f.PRED_LABEL, f.PRED_STATUS, f.PRED_ORIGINAL_LABEL, f.PRED_BBOX)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item's source and the revision it was read at."""

    source: dict[str, Any]
    index: str
    seq_no: int
    primary_term: int


@dataclass(frozen=True, slots=True)
class Reviewed:
    item: dict[str, Any]
    seq_no: int
    primary_term: int
    event: dict[str, Any]
    attempts: int


def item_not_found(item_id: str) -> ApiError:
    return ApiError(404, "item_not_found", "No such item", {"item_id": item_id})


async def load_item(
    es: AsyncElasticsearch,
    index: str,
    item_id: str,
    *,
    source_includes: list[str] | None = None,
) -> StoredItem:
    """The item stored under ``item_id`` (its document id), realtime, with its revision.

    ``source_includes``: only these fields of the source (all by default).
    """
    if not item_id or len(item_id.encode()) > _MAX_ID_BYTES:
        raise item_not_found(item_id)
    try:
        if source_includes is None:
            response = await es.get(index=index, id=item_id)
        else:
            response = await es.get(index=index, id=item_id, source_includes=source_includes)
    except elasticsearch.NotFoundError as exc:
        body = exc.body if isinstance(exc.body, Mapping) else {}
        if "error" in body:  # the index itself is missing: the service is not ready
            raise ApiError(503, "search_unavailable", "The item index does not exist") from exc
        raise item_not_found(item_id) from exc
    source = dict(response["_source"])
    source.setdefault(f.ITEM_ID, item_id)
    return StoredItem(
        source=source,
        index=str(response["_index"]),
        seq_no=int(response["_seq_no"]),
        primary_term=int(response["_primary_term"]),
    )


def _snapshot(prediction: Mapping[str, Any]) -> dict[str, Any]:
    return {k: prediction[k] for k in _SNAPSHOT_FIELDS if prediction.get(k) is not None}


def _find_prediction(
    item: Mapping[str, Any], prediction_id: str
) -> tuple[PredictionKind, int] | None:
    for kind in PredictionKind:
        for position, prediction in enumerate(item.get(kind.path) or ()):
            pid = prediction.get(f.PRED_ID)
            if pid is not None and str(pid) == prediction_id:
                return kind, position
    return None


def apply_review(
    source: Mapping[str, Any],
    prediction_id: str,
    action: ReviewAction,
    *,
    who: str,
    api_key: str,
    label: str | None = None,
    bbox: BBox | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The item after the review (derived fields recomputed) and the history entry.

    Pure: raises :class:`ApiError` 404 for an unknown prediction, 422 for a box on an
    image-level prediction.
    """
    item = dict(source)
    found = _find_prediction(item, prediction_id)
    if found is None:
        raise ApiError(
            404,
            "prediction_not_found",
            "The item has no prediction with this id",
            {"item_id": item.get(f.ITEM_ID), "prediction_id": prediction_id},
        )
    kind, position = found
    predictions = [dict(p) for p in item[kind.path]]
    prediction = predictions[position]

    before = _snapshot(prediction)
    modified = prediction.get(f.PRED_ORIGINAL_LABEL) is not None
    if action is ReviewAction.ACCEPT:
        status = PredictionStatus.MODIFIED if modified else PredictionStatus.ACCEPTED
        prediction[f.PRED_STATUS] = status.value
    elif action is ReviewAction.REJECT:
        prediction[f.PRED_STATUS] = PredictionStatus.REJECTED.value
    else:
        if bbox is not None and kind is PredictionKind.IMAGE:
            raise ApiError(
                422,
                "bbox_not_allowed",
                "Image-level predictions have no box",
                {"errors": [{"loc": ["body", "bbox"], "msg": "image predictions have no box"}]},
            )
        if prediction.get(f.PRED_ORIGINAL_LABEL) is None:
            prediction[f.PRED_ORIGINAL_LABEL] = prediction.get(f.PRED_LABEL)
        if label is not None:
            prediction[f.PRED_LABEL] = label
        if bbox is not None:
            prediction[f.PRED_BBOX] = bbox.model_dump()
        prediction[f.PRED_STATUS] = PredictionStatus.MODIFIED.value
    item[kind.path] = predictions

    at = utc_iso(now)
    event = {
        "at": at,
        "who": who,
        "api_key": api_key,
        "action": action.value,
        "kind": kind.value,
        "prediction_id": prediction_id,
        "before": before,
        "after": _snapshot(prediction),
    }
    item[f.REVIEW_HISTORY] = [*(item.get(f.REVIEW_HISTORY) or ()), event]
    item[f.UPDATED_AT] = at
    return prepare_item(item), event


async def review(
    es: AsyncElasticsearch,
    settings: Settings,
    *,
    item_id: str,
    prediction_id: str,
    action: ReviewAction,
    request: ReviewRequest,
    key: ApiKey,
) -> Reviewed:
    """Apply one review with optimistic concurrency control (see the module docstring)."""
    change = request if isinstance(request, ModifyRequest) else None
    pinned = request.expected_version
    for attempt in range(1, settings.review_max_attempts + 1):
        stored = await load_item(es, settings.index, item_id)
        if pinned is not None and (stored.seq_no, stored.primary_term) != (
            pinned.seq_no,
            pinned.primary_term,
        ):
            raise _conflict(item_id, attempt, stored)
        item, event = apply_review(
            stored.source,
            prediction_id,
            action,
            who=request.reviewer or key.name,
            api_key=key.name,
            label=None if change is None else change.label,
            bbox=None if change is None else change.bbox,
        )
        try:
            written = await es.index(
                index=stored.index,
                id=item_id,
                document=item,
                if_seq_no=stored.seq_no,
                if_primary_term=stored.primary_term,
                refresh=settings.review_refresh,
            )
        except elasticsearch.ConflictError:
            if pinned is not None:
                raise _conflict(item_id, attempt, None) from None
            # Spread the retries of racing reviewers apart.
            await asyncio.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
            continue
        return Reviewed(
            item=item,
            seq_no=int(written["_seq_no"]),
            primary_term=int(written["_primary_term"]),
            event=event,
            attempts=attempt,
        )
    raise _conflict(item_id, settings.review_max_attempts, None)


def _conflict(item_id: str, attempts: int, stored: StoredItem | None) -> ApiError:
    details: dict[str, Any] = {"item_id": item_id, "attempts": attempts}
    if stored is not None:
        details["current_version"] = {"seq_no": stored.seq_no, "primary_term": stored.primary_term}
    return ApiError(
        409, "conflict", "The item was changed by another review; read it again and retry", details
    )
