"""Liveness (the process answers) and readiness (the cluster and the index are there)."""

from __future__ import annotations

import elastic_transport
import elasticsearch
from fastapi import APIRouter

from api.deps import EsDep, SettingsDep
from api.models import Live, Ready
from api.responses import OrjsonResponse
from api.routes import error_responses

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Live, responses=error_responses(always=False))
async def live() -> Live:
    return Live()


@router.get(
    "/ready",
    response_model=Ready,
    responses={
        **error_responses(always=False),
        503: {"model": Ready, "description": "Not ready (the body says what is missing)"},
    },
)
async def ready(es: EsDep, settings: SettingsDep) -> OrjsonResponse:
    cluster_status: str | None = None
    index_exists = False
    try:
        health = await es.cluster.health(timeout="2s")
        cluster_status = str(health["status"])
        index_exists = bool(await es.indices.exists(index=settings.index))
    except (elasticsearch.ApiError, elastic_transport.TransportError):
        pass
    ok = cluster_status in ("green", "yellow") and index_exists
    body = Ready(
        status="ok" if ok else "unavailable",
        cluster_status=cluster_status,
        index=settings.index,
        index_exists=index_exists,
    )
    return OrjsonResponse(body.model_dump(), status_code=200 if ok else 503)
