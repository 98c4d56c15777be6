"""Request dependencies: settings, the process's Elasticsearch client, API-key checks, and the
one read path of every endpoint that runs a query.

Each is an ordinary FastAPI dependency, and every other one reaches the settings and the client
through :func:`get_settings` and :func:`get_es`, so tests swap them for every endpoint with
``app.dependency_overrides``. They are ``async def`` although they never await: FastAPI runs
plain ``def`` dependencies in a worker thread, a thread hop per dependency per request.

Read endpoints take one dependency (:data:`ReadDep`, the key check with the client and the
settings), and those that run a query take :func:`read_query`, which adds the parsed, checked
and translated query: FastAPI resolves every dependency on every request, so the hot path has
as few of them as it can.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from elasticsearch import AsyncElasticsearch
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from api.errors import ApiError
from api.models import QueryBody
from api.query import Parsed, check_metadata, parse_query
from api.settings import ApiKey, Settings
from api.similarity import ClipService, Resolved, resolve
from api.slices import lookup_for
from search.errors import SimilarityError

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
    settings: SettingsDep,
    es: EsDep,
    presented: Annotated[str | None, Security(_api_key_header)],
) -> Reading:
    """The read key check, the client and the settings, as a single dependency."""
    check_read_key(settings, presented)
    return Reading(es, settings)


ReadDep = Annotated[Reading, Depends(reading)]
ReviewerDep = Annotated[ApiKey, Depends(reviewer_key)]

BodyT = TypeVar("BodyT", bound=QueryBody)


@dataclass(frozen=True, slots=True)
class QueryRead(Generic[BodyT]):
    """A read whose key is checked and whose query is parsed, checked and translated.

    A similarity query also comes resolved (``similarity``: its vector and kNN requests);
    :attr:`query` is then the kNN query, never the bare filter.
    """

    body: BodyT
    parsed: Parsed
    es: AsyncElasticsearch
    settings: Settings
    similarity: Resolved | None = None

    @property
    def query(self) -> dict[str, Any]:
        """What counts and facets run, and ``/v1/translate`` shows."""
        return self.parsed.query if self.similarity is None else self.similarity.query


def get_clip(request: Request) -> ClipService:
    clip: ClipService = request.app.state.clip
    return clip


async def resolve_query(es: AsyncElasticsearch, settings: Settings, text: str) -> Parsed:
    """The one way query text becomes a query, for reads and for runs alike: parsed
    (memoised) with the saved slices it names, text compared with numeric metadata refused with
    its position, translated."""
    lookup = await lookup_for(es, settings.index, text)
    parsed = parse_query(text, settings.query_max_length, lookup)
    await check_metadata(es, settings.index, parsed.ast, text)
    return parsed


def refuse_similarity(parsed: Parsed, what: str, text: str) -> None:
    """Refuse, at the clause of the query ``text``, a similarity clause where ``what`` (an
    export, a run...) works on every item a filter selects and nothing ranks them."""
    clause = parsed.similarity
    if clause is not None:
        raise SimilarityError(
            f"{what} takes every item a query selects; a similarity clause only ranks search hits",
            clause.span.start,
            clause.span.end,
            hint="search with it, or leave it out and select the items with a filter",
            query=text,
        )


def read_query(
    model: type[BodyT], *, ranked: str | None = None
) -> Callable[..., Awaitable[QueryRead[BodyT]]]:
    """The dependency of every endpoint that runs a query, for request bodies of ``model``.

    It validates the body, checks the read key, fetches the saved slices the query names (only
    when it names one), parses the query (memoised), refuses text
    compared with numeric metadata (with the position) and translates: query errors are the
    same, answered the same way, on every endpoint. ``ranked``: what the endpoint does, when it
    cannot take a similarity clause (refused with :func:`refuse_similarity`).
    """

    async def read(body: BodyT, reading: ReadDep, request: Request) -> QueryRead[BodyT]:
        settings = reading.settings
        parsed = await resolve_query(reading.es, settings, body.query)
        if ranked is not None:
            refuse_similarity(parsed, ranked, body.query)
        similarity = None
        if parsed.similarity is not None:
            rest = None if parsed.rest is None else parsed.query
            hits = None if parsed.rest is None else parsed.hits_query
            similarity = await resolve(
                reading.es,
                settings,
                get_clip(request),
                parsed.similarity,
                rest,
                hits,
                body.query,
            )
        return QueryRead(body, parsed, reading.es, settings, similarity)

    # FastAPI validates the body against the parameter's annotation. The model is an argument
    # because search's is built per app (its page-size bound is configuration).
    read.__annotations__["body"] = model
    return read
