"""Review endpoints: accept, reject or modify one prediction (API key required)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import EsDep, ReviewerDep, SettingsDep
from api.models import ModifyRequest, ReviewAction, ReviewRequest, ReviewResponse
from api.responses import OrjsonResponse
from api.review import Reviewed, review
from api.routes import error_responses

router = APIRouter(prefix="/items/{item_id}/predictions/{prediction_id}", tags=["review"])
_RESPONSES = error_responses(401, 403, 404, 409)


def _response(done: Reviewed) -> OrjsonResponse:
    return OrjsonResponse(
        {
            "item": done.item,
            "version": {"seq_no": done.seq_no, "primary_term": done.primary_term},
            "event": done.event,
            "attempts": done.attempts,
        }
    )


@router.post(
    "/accept",
    response_model=ReviewResponse,
    responses=_RESPONSES,
    summary="Confirm a prediction",
)
async def accept(
    item_id: str,
    prediction_id: str,
    es: EsDep,
    settings: SettingsDep,
    key: ReviewerDep,
    request: ReviewRequest | None = None,
) -> OrjsonResponse:
    done = await review(
        es,
        settings,
        item_id=item_id,
        prediction_id=prediction_id,
        action=ReviewAction.ACCEPT,
        request=request or ReviewRequest(),
        key=key,
    )
    return _response(done)


@router.post(
    "/reject",
    response_model=ReviewResponse,
    responses=_RESPONSES,
    summary="Reject a prediction (it no longer matches queries unless they ask for rejected)",
)
async def reject(
    item_id: str,
    prediction_id: str,
    es: EsDep,
    settings: SettingsDep,
    key: ReviewerDep,
    request: ReviewRequest | None = None,
) -> OrjsonResponse:
    done = await review(
        es,
        settings,
        item_id=item_id,
        prediction_id=prediction_id,
        action=ReviewAction.REJECT,
        request=request or ReviewRequest(),
        key=key,
    )
    return _response(done)


@router.post(
    "/modify",
    response_model=ReviewResponse,
    responses=_RESPONSES,
    summary="Change a prediction's label and/or box; the model's label is kept",
)
async def modify(
    item_id: str,
    prediction_id: str,
    request: ModifyRequest,
    es: EsDep,
    settings: SettingsDep,
    key: ReviewerDep,
) -> OrjsonResponse:
    done = await review(
        es,
        settings,
        item_id=item_id,
        prediction_id=prediction_id,
        action=ReviewAction.MODIFY,
        request=request,
        key=key,
    )
    return _response(done)
