"""Saved slices: list and read them (read rules), save, rename and delete them (review key).

(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations.)
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api import slices
from api.deps import EsDep, ReadDep, ReviewerDep, SettingsDep
from api.models import (
    SLICE_NAME_PATTERN,
    SliceDeleted,
    SliceInfo,
    SliceList,
    SliceRenamed,
    SliceRenameRequest,
    SliceRequest,
    SliceSaved,
)
from api.responses import OrjsonResponse
from api.routes import error_responses

router = APIRouter(prefix="/slices", tags=["slices"])
Name = Annotated[str, Path(pattern=SLICE_NAME_PATTERN, description="The slice's name.")]


@router.get(
    "",
    response_model=SliceList,
    responses=error_responses(401),
    summary="Every saved slice, by name",
)
async def list_slices(read: ReadDep) -> OrjsonResponse:
    saved = await slices.saved_slices(read.es, read.settings.index)
    return OrjsonResponse({"slices": slices.info_list(saved, read.settings.query_max_length)})


@router.get(
    "/{name}",
    response_model=SliceInfo,
    responses=error_responses(401, 404),
    summary="One saved slice, what it uses and which slices use it",
)
async def get_slice(name: Name, read: ReadDep) -> SliceInfo:
    return await slices.get_slice(read.es, read.settings, name)


@router.put(
    "/{name}",
    response_model=SliceSaved,
    responses=error_responses(401, 403, 409),
    summary="Save a query under a name (checked first; replaces a slice of that name)",
)
async def put_slice(
    name: Name, body: SliceRequest, es: EsDep, settings: SettingsDep, key: ReviewerDep
) -> SliceSaved:
    info, created = await slices.put_slice(es, settings, name, body.query, body.description)
    return SliceSaved(slice=info, created=created)


@router.delete(
    "/{name}",
    response_model=SliceDeleted,
    responses=error_responses(401, 403, 404, 409),
    summary="Delete a slice; 409 naming the slices that use it, unless force",
)
async def delete_slice(
    name: Name,
    es: EsDep,
    settings: SettingsDep,
    key: ReviewerDep,
    force: Annotated[
        bool, Query(description="Delete even if other slices use it (they stop resolving).")
    ] = False,
) -> SliceDeleted:
    broken = await slices.delete_slice(es, settings, name, force=force)
    return SliceDeleted(deleted=name, broken=broken)


@router.post(
    "/{name}/rename",
    response_model=SliceRenamed,
    responses=error_responses(401, 403, 404, 409),
    summary="Rename a slice; 409 naming the slices that use it, unless update_dependants",
)
async def rename_slice(
    name: Name, body: SliceRenameRequest, es: EsDep, settings: SettingsDep, key: ReviewerDep
) -> SliceRenamed:
    info, updated = await slices.rename_slice(
        es, settings, name, body.to, update_dependants=body.update_dependants
    )
    return SliceRenamed(previous=name, slice=info, updated=updated)
