"""One item with all its predictions and its review history."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReadDep
from api.models import ItemResponse
from api.responses import OrjsonResponse
from api.review import load_item
from api.routes import error_responses
from store import schema as f

router = APIRouter(prefix="/items", tags=["items"])


@router.get(
    "/{item_id}",
    response_model=ItemResponse,
    responses=error_responses(401, 404),
    summary="One item, with the revision to pass to a review for a strict check",
)
async def get_item(item_id: str, read: ReadDep) -> OrjsonResponse:
    stored = await load_item(read.es, read.settings.index, item_id)
    stored.source.pop(f.EMBEDDING, None)  # hundreds of floats, for the index's use
    version = {"seq_no": stored.seq_no, "primary_term": stored.primary_term}
    return OrjsonResponse({"item": stored.source, "version": version})
