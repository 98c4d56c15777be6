"""Similarity queries in the API: the query's vector, the model checks, the requests sent.

``search`` is pure: it parses ``similar:"..."``/``similar_to:ID`` and builds the kNN query
around a vector it is given. This module finds that vector, ``similar:`` texts through the
API's CLIP model (``AUTOTAG_CLIP_WEIGHTS``, loaded on first use, texts cached) and
``similar_to:`` items from their stored embedding, after checking that the index has
embeddings at all and that the API's model is the one that made them. Every refusal is a 400
with the envelope (a 503 only when the configured model cannot be loaded).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
import elasticsearch
from elasticsearch import AsyncElasticsearch

from api.cache import PerIndexCache
from api.errors import ApiError
from api.settings import Settings
from search.ast import Similar, SimilarityKind
from search.errors import SimilarityError
from search.similarity import candidates_filter, knn_query, neighbours, ranked_query
from store import schema as f
from store.embeddings import EmbeddingModel, has_embedding_field, index_meta

if TYPE_CHECKING:
    from embeddings.clip import ClipEncoder

INDEX_FACTS_TTL_S: Final = 30.0
_MAX_ID_BYTES: Final = 512


@dataclass(frozen=True, slots=True)
class IndexEmbeddings:
    """What an index says about its embeddings."""

    has_field: bool
    model: EmbeddingModel | None


_index_facts: PerIndexCache[IndexEmbeddings] = PerIndexCache(INDEX_FACTS_TTL_S)


class ClipService:
    """The API's CLIP model, loaded on the first ``similar:`` text (in a worker thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._encoder: ClipEncoder | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.settings.clip_weights is not None

    async def encoder(self) -> ClipEncoder:
        async with self._lock:
            if self._encoder is None:
                self._encoder = await anyio.to_thread.run_sync(self._load)
            return self._encoder

    def _load(self) -> ClipEncoder:
        from embeddings.clip import ClipEncoder

        try:
            return ClipEncoder(
                self.settings.clip_model or "",
                str(self.settings.clip_weights),
                device=self.settings.clip_device,
            )
        except Exception as error:
            raise ApiError(
                503,
                "similarity_unavailable",
                f"The API's CLIP model (AUTOTAG_CLIP_WEIGHTS) could not be loaded: {error}",
            ) from error

    async def text_vector(self, text: str) -> list[float]:
        encoder = await self.encoder()
        vector = await anyio.to_thread.run_sync(encoder.text_embedding, text)
        return [float(x) for x in vector]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A similarity query made concrete: its clause, vector and the bodies endpoints send."""

    clause: Similar
    vector: list[float]
    k: int
    query: dict[str, Any]  # the kNN query (count, facets, translate)
    hits_query: dict[str, Any]  # the kNN query with the rest's inner hits (search)
    ranked: dict[str, Any]  # the items it ranks: the rest, with an embedding, not excluded
    skipped: dict[str, Any]  # the items the rest selects that have no embedding


async def index_embeddings(es: AsyncElasticsearch, index: str) -> IndexEmbeddings:
    async def load() -> IndexEmbeddings:
        mappings = (await es.indices.get_mapping(index=index)).body
        model = EmbeddingModel.from_meta(index_meta(mappings))
        return IndexEmbeddings(has_embedding_field(mappings), model)

    try:
        return await _index_facts.get(index, load)
    except elasticsearch.NotFoundError as error:
        raise ApiError(503, "search_unavailable", "The item index does not exist") from error


async def resolve(
    es: AsyncElasticsearch,
    settings: Settings,
    clip: ClipService,
    clause: Similar,
    rest: dict[str, Any] | None,
    rest_hits: dict[str, Any] | None,
    query_text: str,
) -> Resolved:
    """The vector of ``clause`` and the requests of its query, or the 400 that says why not."""
    facts = await index_embeddings(es, settings.index)
    if not facts.has_field:
        raise ApiError(
            400,
            "similarity_unavailable",
            "This index has no embeddings: it was created before schema version 2. Run "
            "`autotag migrate`, then `autotag embed` (or index images again)",
            {"index": settings.index},
        )
    if facts.model is None:
        raise ApiError(
            400,
            "similarity_unavailable",
            "No item of this index has an embedding yet: `autotag index` stores them while "
            "tagging images with CLIP, `autotag embed` adds them to items indexed before",
            {"index": settings.index},
        )
    if clause.kind is SimilarityKind.TEXT:
        vector = await _text_vector(clip, facts.model, clause.value)
    else:
        vector = await _item_vector(es, settings.index, clause, query_text)
    k = neighbours(clause)
    return Resolved(
        clause=clause,
        vector=vector,
        k=k,
        query=knn_query(clause, vector, rest),
        hits_query=ranked_query(clause, vector, rest, hits_query=rest_hits),
        ranked=candidates_filter(clause, rest),
        skipped=_without_embedding(rest),
    )


def _without_embedding(rest: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"must_not": [{"exists": {"field": f.EMBEDDING}}]}
    if rest is not None:
        body["filter"] = [rest]
    return {"bool": body}


async def _text_vector(clip: ClipService, index_model: EmbeddingModel, text: str) -> list[float]:
    details = {"index_model": index_model.to_meta()}
    if not clip.configured:
        raise ApiError(
            400,
            "similarity_unavailable",
            "Text similarity needs the API's CLIP model: set AUTOTAG_CLIP_WEIGHTS (and "
            f"AUTOTAG_CLIP_MODEL) to this index's embedding model, {index_model.name}",
            details,
        )
    encoder = await clip.encoder()
    mine = encoder.identity()
    if not mine.same_model(index_model):
        raise ApiError(
            400,
            "embedding_model_mismatch",
            f"The API's CLIP model {mine.name} is not the model that made this index's "
            f"embeddings, {index_model.name}: its text vectors would not be comparable. Set "
            "AUTOTAG_CLIP_WEIGHTS to the index's model",
            {**details, "api_model": mine.to_meta()},
        )
    return await clip.text_vector(text)


async def _item_vector(
    es: AsyncElasticsearch, index: str, clause: Similar, query_text: str
) -> list[float]:
    start, end = clause.value_span.start, clause.value_span.end
    missing = SimilarityError(
        f"no item `{clause.value}`",
        start,
        end,
        hint="similar_to: takes the id of an item of this index",
        query=query_text,
    )
    if len(clause.value.encode()) > _MAX_ID_BYTES:  # no document id is that long
        raise missing
    try:
        response = await es.get(
            index=index,
            id=clause.value,
            source_includes=[f.EMBEDDING],
            source_exclude_vectors=False,
        )
    except elasticsearch.NotFoundError:
        raise missing from None
    vector = (response.get("_source") or {}).get(f.EMBEDDING)
    if vector is None:
        raise SimilarityError(
            f"item `{clause.value}` has no embedding",
            start,
            end,
            hint="it has no image, or was indexed before embeddings: `autotag embed` adds them",
            query=query_text,
        )
    return [float(x) for x in vector]
