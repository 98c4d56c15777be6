"""Review by query: a dry-run count, then accept or reject every pending prediction a query
matched (see api.bulk_review). (No ``from __future__ import annotations`` here: FastAPI reads
the endpoints' annotations.)"""

from typing import Annotated

from fastapi import APIRouter, Depends

from api import bulk_review
from api.deps import QueryRead, ReviewerDep, read_query
from api.errors import ApiError
from api.hints import label_hints
from api.models import (
    ReviewByQueryError,
    ReviewByQueryPreview,
    ReviewByQueryPreviewRequest,
    ReviewByQueryRequest,
    ReviewByQueryResponse,
)
from api.routes import error_responses
from store.schema import PredictionKind

router = APIRouter(prefix="/review-by-query", tags=["review"])
PreviewQuery = Annotated[
    QueryRead[ReviewByQueryPreviewRequest],
    Depends(read_query(ReviewByQueryPreviewRequest, ranked="a review by query")),
]
ApplyQuery = Annotated[
    QueryRead[ReviewByQueryRequest],
    Depends(read_query(ReviewByQueryRequest, ranked="a review by query")),
]


@router.post(
    "/preview",
    response_model=ReviewByQueryPreview,
    responses=error_responses(400, 401),
    summary="Dry run: how many pending predictions the query matched (what a run would change)",
)
async def preview(q: PreviewQuery) -> ReviewByQueryPreview:
    found = await bulk_review.preview(q.es, q.settings.index, q.parsed.query, q.parsed.hits_query)
    hints = [] if found.items else await label_hints(q.es, q.settings.index, q.parsed.ast)
    return ReviewByQueryPreview(
        query=q.parsed.canonical,
        items=found.items,
        predictions=found.total,
        image_predictions=found.predictions[PredictionKind.IMAGE],
        object_predictions=found.predictions[PredictionKind.OBJECT],
        hints=hints,
    )


@router.post(
    "",
    response_model=ReviewByQueryResponse,
    responses=error_responses(400, 401, 403, 409),
    summary="Accept or reject every pending prediction the query matched (its inner hits)",
)
async def run(q: ApplyQuery, key: ReviewerDep) -> ReviewByQueryResponse:
    """Concurrency-safe and idempotent; a run cut short finishes when sent again (with its
    `run_id` to keep one id in the history)."""
    es, index, parsed, body = q.es, q.settings.index, q.parsed, q.body
    if body.expected_predictions is not None:
        now = await bulk_review.preview(es, index, parsed.query, parsed.hits_query)
        if now.total != body.expected_predictions:
            raise ApiError(
                409,
                "matched_set_changed",
                "The query matches a different number of pending predictions than the dry "
                "run said; nothing was applied",
                {"expected_predictions": body.expected_predictions, "predictions": now.total},
            )
    done = await bulk_review.apply(
        es,
        index,
        parsed.query,
        parsed.hits_query,
        action=body.action,
        who=body.reviewer or key.name,
        api_key=key.name,
        run_id=body.run_id or bulk_review.new_run_id(),
    )
    return ReviewByQueryResponse(
        query=parsed.canonical,
        action=body.action,
        run_id=done.run_id,
        items=done.items,
        predictions=done.predictions,
        conflicts=done.conflicts,
        failed=done.failed,
        errors=[ReviewByQueryError(**error) for error in done.errors],
        remaining=done.remaining,
        sweeps=done.sweeps,
        seconds=round(done.seconds, 3),
    )
