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
time a prediction is modified and is never overwritten; ``original_bbox`` likewise the model's
box, the first time a review moves it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import elasticsearch
from elastic_transport import ObjectApiResponse
from elasticsearch import AsyncElasticsearch

from api.errors import ApiError
from api.models import (
    BBox,
    Decision,
    ModifyDecision,
    ModifyRequest,
    ReviewAction,
    ReviewRequest,
    SaveReviewRequest,
)
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


@dataclass(frozen=True, slots=True)
class Change:
    """One decision about one prediction: accept, reject, or modify (new label and/or box)."""

    prediction_id: str
    action: ReviewAction
    label: str | None = None
    bbox: BBox | None = None
    # Where the prediction is, when known (a review by query names it by its nested offset).
    at: tuple[PredictionKind, int] | None = None


def _apply_one(
    item: dict[str, Any], change: Change, *, who: str, api_key: str, at: str
) -> dict[str, Any]:
    """Apply ``change`` to ``item`` (whose prediction lists it replaces); the history entry."""
    prediction_id, action = change.prediction_id, change.action
    found = change.at or _find_prediction(item, prediction_id)
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
        if change.bbox is not None and kind is PredictionKind.IMAGE:
            raise ApiError(
                422,
                "bbox_not_allowed",
                "Image-level predictions have no box",
                {
                    "errors": [{"loc": ["body", "bbox"], "msg": "image predictions have no box"}],
                    "prediction_id": prediction_id,
                },
            )
        if prediction.get(f.PRED_ORIGINAL_LABEL) is None:
            prediction[f.PRED_ORIGINAL_LABEL] = prediction.get(f.PRED_LABEL)
        if change.label is not None:
            prediction[f.PRED_LABEL] = change.label
        if change.bbox is not None:
            # The model's box, kept once like original_label: evaluation judges the model by it.
            if prediction.get(f.PRED_ORIGINAL_BBOX) is None and f.PRED_BBOX in prediction:
                prediction[f.PRED_ORIGINAL_BBOX] = prediction[f.PRED_BBOX]
            prediction[f.PRED_BBOX] = change.bbox.model_dump()
        prediction[f.PRED_STATUS] = PredictionStatus.MODIFIED.value
    item[kind.path] = predictions
    return {
        "at": at,
        "who": who,
        "api_key": api_key,
        "action": action.value,
        "kind": kind.value,
        "prediction_id": prediction_id,
        "before": before,
        "after": _snapshot(prediction),
    }


def apply_changes(
    source: Mapping[str, Any],
    changes: Sequence[Change],
    *,
    who: str,
    api_key: str,
    now: datetime | None = None,
    note: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The item after every change (derived fields recomputed) and one history entry each.

    Pure: all or nothing, raising :class:`ApiError` 404 for an unknown prediction, 422 for a
    box on an image-level prediction. ``note`` goes into every entry (a bulk run's id).
    """
    item = dict(source)
    at = utc_iso(now)
    events = []
    for change in changes:
        event = _apply_one(item, change, who=who, api_key=api_key, at=at)
        events.append({**event, **(note or {})})
    item[f.REVIEW_HISTORY] = [*(item.get(f.REVIEW_HISTORY) or ()), *events]
    item[f.UPDATED_AT] = at
    return prepare_item(item), events


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
    """The item after one review (derived fields recomputed) and its history entry."""
    item, events = apply_changes(
        source,
        [Change(prediction_id, action, label, bbox)],
        who=who,
        api_key=api_key,
        now=now,
    )
    return item, events[0]


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
            written = await _write_back(es, settings, item_id, item, stored)
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


async def _write_back(
    es: AsyncElasticsearch,
    settings: Settings,
    item_id: str,
    item: dict[str, Any],
    stored: StoredItem,
) -> ObjectApiResponse[Any]:
    """Write the reviewed ``item`` over ``stored`` if it is still at the revision read
    (``ConflictError`` if not); the answer carries the new revision."""
    return await es.index(
        index=stored.index,
        id=item_id,
        document=item,
        if_seq_no=stored.seq_no,
        if_primary_term=stored.primary_term,
        refresh=settings.review_refresh,
    )


def _change(decision: Decision) -> Change:
    if isinstance(decision, ModifyDecision):
        return Change(decision.prediction_id, decision.action, decision.label, decision.bbox)
    return Change(decision.prediction_id, decision.action)


@dataclass(frozen=True, slots=True)
class Saved:
    item: dict[str, Any]
    seq_no: int
    primary_term: int
    events: list[dict[str, Any]]


async def save_review(
    es: AsyncElasticsearch,
    settings: Settings,
    *,
    item_id: str,
    request: SaveReviewRequest,
    key: ApiKey,
) -> Saved:
    """Apply every decision of ``request`` to the item in one conditional write.

    The item must still be at ``request.expected_version``: otherwise nothing is written and
    the 409 carries the item as it is now, so the reviewer sees what changed.
    """
    ids = [decision.prediction_id for decision in request.decisions]
    if len(set(ids)) != len(ids):
        twice = sorted({pid for pid in ids if ids.count(pid) > 1})
        raise ApiError(
            422,
            "duplicate_decision",
            "One decision per prediction",
            {"item_id": item_id, "prediction_ids": twice},
        )
    pinned = request.expected_version
    stored = await load_item(es, settings.index, item_id)
    if (stored.seq_no, stored.primary_term) != (pinned.seq_no, pinned.primary_term):
        raise _conflict(item_id, 1, stored, with_item=True)
    item, events = apply_changes(
        stored.source,
        [_change(decision) for decision in request.decisions],
        who=request.reviewer or key.name,
        api_key=key.name,
    )
    try:
        written = await _write_back(es, settings, item_id, item, stored)
    except elasticsearch.ConflictError:
        now = await load_item(es, settings.index, item_id)
        raise _conflict(item_id, 1, now, with_item=True) from None
    return Saved(
        item=item,
        seq_no=int(written["_seq_no"]),
        primary_term=int(written["_primary_term"]),
        events=events,
    )


def _conflict(
    item_id: str, attempts: int, stored: StoredItem | None, *, with_item: bool = False
) -> ApiError:
    details: dict[str, Any] = {"item_id": item_id, "attempts": attempts}
    if stored is not None:
        details["current_version"] = {"seq_no": stored.seq_no, "primary_term": stored.primary_term}
        if with_item:
            details["current_item"] = stored.source
    return ApiError(
        409, "conflict", "The item was changed by another review; read it again and retry", details
    )
