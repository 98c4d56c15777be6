"""One item with all its predictions and its review history; registering new items."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import EsDep, ReadDep, ReviewerDep, SettingsDep
from api.errors import refuse_unstorable
from api.models import ItemResponse
from api.responses import OrjsonResponse
from api.review import load_item
from api.routes import error_responses
from api.run_models import RegisterFailure, RegisterRequest, RegisterResponse
from store import schema as f
from store.calls import drive_async
from store.clock import utc_iso
from store.runs import NewItem, register_items

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


@router.post(
    "",
    response_model=RegisterResponse,
    responses=error_responses(401, 403),
    summary="Register new items; datasets with auto-tagging queue their tagging",
)
async def register(
    body: RegisterRequest, key: ReviewerDep, es: EsDep, settings: SettingsDep
) -> RegisterResponse:
    refuse_unstorable(body.model_dump(mode="json"))
    items = [
        NewItem(
            item_id=item.item_id or item.uri,
            uri=item.uri,
            dataset=item.dataset or body.dataset,
            metadata=item.metadata,
            uploaded_at=None if item.uploaded_at is None else utc_iso(item.uploaded_at),
        )
        for item in body.items
    ]
    done = await drive_async(es, register_items(settings.index, settings.runs_index, items))
    return RegisterResponse(
        created=done.created,
        existing=done.existing,
        failed=[RegisterFailure(item_id=i, reason=why) for i, why in done.failed],
        runs=done.runs,
    )
