"""Search (paged, with the predictions each hit matched), count and translate (explain).

The router is built per app: the bound on search's page size is configuration, and pydantic
states it in both the validation and the schema. (No ``from __future__ import annotations``
here: FastAPI reads the endpoints' annotations, which name the app's own dependency.)
"""

import asyncio
import contextlib
from typing import Annotated, Any

import elastic_transport
import elasticsearch
from elasticsearch import AsyncElasticsearch
from fastapi import APIRouter, Depends

from api.deps import QueryRead, read_query
from api.errors import ApiError, whole_answer
from api.hints import dump, label_hints
from api.models import (
    CountRequest,
    CountResponse,
    SearchRequest,
    SearchResponse,
    SortKey,
    TranslateRequest,
    TranslateResponse,
    search_request,
)
from api.query import (
    Cursor,
    answer_hits,
    decode_cursor,
    default_order,
    encode_cursor,
    fingerprint,
    probed_first_page,
    search_body,
)
from api.responses import OrjsonResponse
from api.routes import error_responses
from api.settings import Settings
from search.similarity import cosine_of_score

CountQuery = Annotated[QueryRead[CountRequest], Depends(read_query(CountRequest))]
TranslateQuery = Annotated[QueryRead[TranslateRequest], Depends(read_query(TranslateRequest))]


def router(settings: Settings) -> APIRouter:
    """The routes for an app with these settings."""
    SearchQuery = Annotated[
        QueryRead[SearchRequest], Depends(read_query(search_request(settings.max_page_size)))
    ]
    routes = APIRouter(tags=["search"])

    @routes.post(
        "/search",
        response_model=SearchResponse,
        responses=error_responses(400, 401, 410),
        summary="Items matching a query, with the predictions that matched",
    )
    async def search(q: SearchQuery) -> OrjsonResponse:
        return await search_page(q)

    @routes.post(
        "/count",
        response_model=CountResponse,
        # skipped_without_embedding only answers a similarity query
        response_model_exclude_unset=True,
        responses=error_responses(400, 401),
        summary="How many items match a query",
    )
    async def count(q: CountQuery) -> CountResponse:
        if q.similarity is not None:
            return await similarity_count(q)
        response = whole_answer(await q.es.count(index=q.settings.index, query=q.parsed.query))
        count = int(response["count"])
        hints = [] if count else await label_hints(q.es, q.settings.index, q.parsed.ast)
        return CountResponse(query=q.parsed.canonical, count=count, hints=hints)

    @routes.post(
        "/translate",
        response_model=TranslateResponse,
        responses=error_responses(400, 401),
        summary="The canonical query and the Elasticsearch DSL it becomes, without running it",
    )
    async def explain(q: TranslateQuery) -> TranslateResponse:
        return TranslateResponse(query=q.parsed.canonical, dsl=q.query, slices=q.parsed.slices)

    return routes


async def similarity_count(q: QueryRead[CountRequest]) -> CountResponse:
    """The k nearest by definition number min(k, the items ranked); and those skipped."""
    assert q.similarity is not None
    index = q.settings.index
    ranked, skipped = await asyncio.gather(
        q.es.count(index=index, query=q.similarity.ranked),
        q.es.count(index=index, query=q.similarity.skipped),
    )
    count = min(q.similarity.k, int(whole_answer(ranked)["count"]))
    hints = [] if count else await label_hints(q.es, index, q.parsed.ast)
    return CountResponse(
        query=q.parsed.canonical,
        count=count,
        hints=hints,
        skipped_without_embedding=int(whole_answer(skipped)["count"]),
    )


async def search_page(q: QueryRead[SearchRequest]) -> OrjsonResponse:
    """One page of hits, and the cursor to the next one."""
    es, settings, request, parsed, similar = q.es, q.settings, q.body, q.parsed, q.similarity
    size = request.size or settings.default_page_size
    canonical = parsed.canonical
    order = request.order or default_order(request.sort)
    expect = fingerprint(canonical, request.sort, order)
    cursor = None
    if request.cursor is not None:
        keys = len(parsed.sort(request.sort, order))
        cursor = decode_cursor(request.cursor, expect=expect, keys=keys)

    pit_id = cursor.pit_id if cursor is not None else None
    if cursor is None and request.consistent:
        opened = await es.open_point_in_time(
            index=settings.index, keep_alive=settings.pit_keep_alive
        )
        pit_id = str(opened["id"])
    pit = None if pit_id is None else {"id": pit_id, "keep_alive": settings.pit_keep_alive}
    returned = 0 if cursor is None else cursor.returned
    if similar is not None:  # never past the k nearest
        size = max(0, min(size, similar.k - returned))
    body = search_body(
        parsed,
        size=size + 1,
        key=request.sort,
        order=order,
        after=None if cursor is None else cursor.after,
        pit=pit,
        track_total_hits=settings.track_total_hits,
        query=None if similar is None else similar.hits_query,
    )
    response = None
    skipped = None
    if similar is not None:
        found, missing = await asyncio.gather(
            _plain_page(es, settings.index, body, pit),
            es.count(index=settings.index, query=similar.skipped),
        )
        response = found
        skipped = int(whole_answer(missing)["count"])
    elif cursor is None and pit is None and request.sort is SortKey.SCORE:
        response = await probed_first_page(
            es,
            settings.index,
            parsed,
            size=size + 1,
            order=order,
            track_total_hits=settings.track_total_hits,
            enabled=settings.score_page_probe,
        )
    if response is None:
        response = await _plain_page(es, settings.index, body, pit)

    hits: list[dict[str, Any]] = response["hits"]["hits"]
    next_cursor = None
    pit_id = response.get("pit_id", pit_id)
    more = len(hits) > size
    hits = hits[:size]
    if similar is not None and returned + len(hits) >= similar.k:
        more = False
    if more:
        after = hits[-1]["sort"]
        next_cursor = encode_cursor(Cursor(expect, after, pit_id, returned + len(hits)))
    elif pit_id is not None:
        await _close_quietly(es, pit_id)

    total = response["hits"]["total"]
    if similar is not None:  # k per shard were found: the answer is the k nearest of them
        total = {"value": min(similar.k, int(total["value"])), "relation": "eq"}
    hints = [] if total["value"] else dump(await label_hints(es, settings.index, parsed.ast))
    out_hits = answer_hits(hits)
    if similar is not None:
        for out, hit in zip(out_hits, hits, strict=True):
            out["similarity"] = cosine_of_score(hit["_score"])
    # Built as plain data and serialised by orjson: validating every stored item against the
    # response model would cost more than the search itself. Tests check conformance.
    return OrjsonResponse(
        {
            "query": canonical,
            "total": total["value"],
            "total_relation": total["relation"],
            "hits": out_hits,
            "next_cursor": next_cursor,
            "hints": hints,
            **({} if skipped is None else {"skipped_without_embedding": skipped}),
        }
    )


async def _plain_page(
    es: AsyncElasticsearch, index: str, body: dict[str, Any], pit: dict[str, Any] | None
) -> Any:
    try:
        if pit is None:
            # The shard request cache answers a repeated page (a dashboard's) until the next
            # refresh changes the index; Elasticsearch skips it for queries it cannot cache.
            return whole_answer(await es.search(index=index, body=body, request_cache=True))
        return whole_answer(await es.search(body=body))
    except elasticsearch.NotFoundError as exc:
        if pit is None:
            raise
        raise ApiError(
            410, "cursor_expired", "The cursor's point in time expired; search again"
        ) from exc


async def _close_quietly(es: AsyncElasticsearch, pit_id: str) -> None:
    with contextlib.suppress(elasticsearch.ApiError, elastic_transport.TransportError):
        await es.close_point_in_time(id=pit_id)  # else it expires by itself
