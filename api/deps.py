"""Request dependencies: settings, the process's Elasticsearch client, API-key checks.

Each is an ordinary FastAPI dependency, so tests swap any of them with
``app.dependency_overrides``. They are ``async def`` although they never await: FastAPI runs
plain ``def`` dependencies in a worker thread, a thread hop per dependency per request.

Read endpoints take one dependency, :data:`ReadDep` (the key check, the client and the
settings together): FastAPI resolves every dependency on every request, and on ``/v1/search``
five small ones cost about a sixth of the route's own time, measured in-process. ``reading``
calls :func:`get_settings` and :func:`get_es` directly, so a test that swaps the client for a
read endpoint overrides ``reading`` or sets ``app.state.es``; overriding ``get_es`` reaches only
the review and health endpoints.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from elasticsearch import AsyncElasticsearch
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from api.errors import ApiError
from api.settings import ApiKey, Settings

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key; required for review, and for reads unless they are open.",
)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_es(request: Request) -> AsyncElasticsearch:
    es: AsyncElasticsearch | None = getattr(request.app.state, "es", None)
    if es is None:
        # Only when the app runs without its lifespan (a misconfigured test harness).
        raise ApiError(503, "search_unavailable", "The Elasticsearch client is not started")
    return es


SettingsDep = Annotated[Settings, Depends(get_settings)]
EsDep = Annotated[AsyncElasticsearch, Depends(get_es)]


def _find(presented: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The key whose secret equals ``presented``; every key is compared, in constant time."""
    candidate = presented.encode()
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(candidate, key.secret):
            found = key
    return found


async def reviewer_key(
    settings: SettingsDep, presented: Annotated[str | None, Security(_api_key_header)]
) -> ApiKey:
    """The review key the request carries: 401 without a known key, 403 for a read-only one."""
    if not presented:
        raise ApiError(401, "unauthorized", "This endpoint needs an API key (X-API-Key)")
    key = _find(presented, settings.review_keys())
    if key is not None:
        return key
    if _find(presented, settings.read_keys()) is not None:
        raise ApiError(403, "forbidden", "This API key may read but not review")
    raise ApiError(401, "unauthorized", "Unknown API key")


def check_read_key(settings: Settings, presented: str | None) -> None:
    """Reads pass when open; otherwise they need a read or review key."""
    if settings.open_reads:
        return
    if not presented:
        raise ApiError(401, "unauthorized", "This endpoint needs an API key (X-API-Key)")
    if _find(presented, settings.read_keys() + settings.review_keys()) is None:
        raise ApiError(401, "unauthorized", "Unknown API key")


@dataclass(frozen=True, slots=True)
class Reading:
    """What a read endpoint works with, once its key is checked."""

    es: AsyncElasticsearch
    settings: Settings


async def reading(
    request: Request, presented: Annotated[str | None, Security(_api_key_header)]
) -> Reading:
    """The read key check, the client and the settings, as a single dependency."""
    settings = await get_settings(request)
    check_read_key(settings, presented)
    return Reading(await get_es(request), settings)


ReadDep = Annotated[Reading, Depends(reading)]
ReviewerDep = Annotated[ApiKey, Depends(reviewer_key)]
