"""Review endpoints (API key required): accept, reject or modify one prediction, or save every
staged decision about one item at once ("Save your review").

One handler serves the three single actions; each has its own operation, with its own body.
(No ``from __future__ import annotations`` here: FastAPI reads the handler's annotations,
which name the action's body dependency.)
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import EsDep, ReviewerDep, SettingsDep
from api.models import (
    ModifyRequest,
    ReviewAction,
    ReviewRequest,
    ReviewResponse,
    SaveReviewRequest,
    SaveReviewResponse,
)
from api.responses import OrjsonResponse
from api.review import review, save_review
from api.routes import error_responses
from store import schema as f

router = APIRouter(prefix="/items/{item_id}/predictions/{prediction_id}", tags=["review"])
item_router = APIRouter(prefix="/items/{item_id}", tags=["review"])
_RESPONSES = error_responses(401, 403, 404, 409)


async def _optional_body(request: ReviewRequest | None = None) -> ReviewRequest:
    """Accept and reject: the body is optional."""
    return request or ReviewRequest()


async def _modify_body(request: ModifyRequest) -> ReviewRequest:
    """Modify: the body says what changes."""
    return request


def _route(
    action: ReviewAction, body: Callable[..., Awaitable[ReviewRequest]], summary: str
) -> None:
    Change = Annotated[ReviewRequest, Depends(body)]

    @router.post(
        f"/{action}",
        name=action.value,
        response_model=ReviewResponse,
        responses=_RESPONSES,
        summary=summary,
    )
    async def handle(
        item_id: str,
        prediction_id: str,
        es: EsDep,
        settings: SettingsDep,
        key: ReviewerDep,
        change: Change,
    ) -> OrjsonResponse:
        done = await review(
            es,
            settings,
            item_id=item_id,
            prediction_id=prediction_id,
            action=action,
            request=change,
            key=key,
        )
        done.item.pop(f.EMBEDDING, None)  # the index's, not the reviewer's
        return OrjsonResponse(
            {
                "item": done.item,
                "version": {"seq_no": done.seq_no, "primary_term": done.primary_term},
                "event": done.event,
                "attempts": done.attempts,
            }
        )


_route(ReviewAction.ACCEPT, _optional_body, "Confirm a prediction")
_route(
    ReviewAction.REJECT,
    _optional_body,
    "Reject a prediction (it no longer matches queries unless they ask for rejected)",
)
_route(
    ReviewAction.MODIFY,
    _modify_body,
    "Change a prediction's label and/or box; the model's label is kept",
)


@item_router.post(
    "/review",
    response_model=SaveReviewResponse,
    responses=_RESPONSES,
    summary="Save your review: every decision about one item, in one write, or none",
)
async def save(
    item_id: str,
    request: SaveReviewRequest,
    es: EsDep,
    settings: SettingsDep,
    key: ReviewerDep,
) -> OrjsonResponse:
    """Applied atomically with the item's version: a 409 when the item changed since
    `expected_version`, with `current_item` and `current_version` in its details."""
    done = await save_review(es, settings, item_id=item_id, request=request, key=key)
    return OrjsonResponse(
        {
            "item": done.item,
            "version": {"seq_no": done.seq_no, "primary_term": done.primary_term},
            "events": done.events,
        }
    )
