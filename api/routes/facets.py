"""Dashboard facets over the items a query matches, and the two-model comparison."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Final

from elasticsearch import AsyncElasticsearch
from fastapi import APIRouter, Depends

from api.deps import QueryRead, ReadDep, read_query
from api.errors import whole_answer
from api.hints import label_hints
from api.models import (
    CompareRequest,
    Comparison,
    ComparisonRow,
    FacetsRequest,
    FacetsResponse,
    HistogramBin,
    KindFacets,
    LabelFacet,
    LabelsResponse,
    ScoreBands,
    StatusCount,
    ValueCount,
)
from api.query import both_predict, facets_body, histogram_edges, labels_in_use_body
from api.routes import error_responses
from search.fields import BAND_RANGES
from store.schema import PredictionKind

router = APIRouter(tags=["facets"])
FacetsQuery = Annotated[QueryRead[FacetsRequest], Depends(read_query(FacetsRequest))]


@router.post(
    "/facets",
    response_model=FacetsResponse,
    responses=error_responses(400, 401),
    summary="Counts per label, training set and review status; score bands; model comparison",
)
async def facets(q: FacetsQuery) -> FacetsResponse:
    es, settings, request, query = q.es, q.settings, q.body, q.query
    cmp = request.compare
    compare = None if cmp is None else (cmp.training_set_a, cmp.training_set_b, cmp.threshold)
    body = facets_body(query, labels=request.labels, compare=compare)
    response = whole_answer(await es.search(index=settings.index, body=body))
    aggs = response["aggregations"]

    comparison = None
    if cmp is not None:
        comparison = await _comparison(es, settings.index, query, aggs, cmp)
    total = int(response["hits"]["total"]["value"])
    return FacetsResponse(
        query=q.parsed.canonical,
        total=total,
        autotag_status=[
            StatusCount(status=str(b["key"]), items=b["doc_count"])
            for b in aggs["autotag_status"]["buckets"]
        ],
        kinds=[_kind_facets(kind, aggs[f"kind_{kind.value}"]) for kind in PredictionKind],
        comparison=comparison,
        hints=[] if total else await label_hints(es, settings.index, q.parsed.ast),
    )


def _values(buckets: list[dict[str, Any]]) -> list[ValueCount]:
    return [
        ValueCount(value=str(b["key"]), items=b["items"]["doc_count"], predictions=b["doc_count"])
        for b in buckets
    ]


def _kind_facets(kind: PredictionKind, agg: dict[str, Any]) -> KindFacets:
    labels = []
    for b in agg["visible"]["labels"]["buckets"]:
        bands = b["bands"]["buckets"]
        counts = {band.value: bands[band.value]["doc_count"] for band in BAND_RANGES}
        labels.append(
            LabelFacet(
                label=str(b["key"]),
                items=b["items"]["doc_count"],
                predictions=b["doc_count"],
                scores=ScoreBands(**counts),
            )
        )
    edges = histogram_edges()
    bins = agg["visible"]["histogram"]["buckets"]
    return KindFacets(
        kind=kind,
        labels=labels,
        training_sets=_values(agg["visible"]["training_sets"]["buckets"]),
        statuses=_values(agg["statuses"]["buckets"]),
        histogram=[
            HistogramBin(low=low, high=high, predictions=bins[f"{low}"]["doc_count"])
            for low, high in itertools.pairwise(edges)
        ],
    )


async def _comparison(
    es: AsyncElasticsearch,
    index: str,
    query: dict[str, Any],
    aggs: dict[str, Any],
    cmp: CompareRequest,
) -> Comparison:
    """Per-set counts come with the facets; "both" needs one more, item-level, request."""
    a, b, threshold = cmp.training_set_a, cmp.training_set_b, cmp.threshold
    rows: list[tuple[PredictionKind, dict[str, Any]]] = [
        (kind, bucket)
        for kind in PredictionKind
        for bucket in aggs[f"compare_{kind.value}"]["sets"]["labels"]["buckets"]
    ]
    both: dict[str, Any] = {}
    if rows:
        filters = {
            str(i): both_predict(kind.path, str(bucket["key"]), a, b, threshold)
            for i, (kind, bucket) in enumerate(rows)
        }
        body = {"query": query, "size": 0, "aggs": {"both": {"filters": {"filters": filters}}}}
        response = whole_answer(await es.search(index=index, body=body))
        both = response["aggregations"]["both"]["buckets"]

    out = []
    for i, (kind, bucket) in enumerate(rows):
        mean_a, mean_b = bucket["a"]["mean"]["value"], bucket["b"]["mean"]["value"]
        out.append(
            ComparisonRow(
                kind=kind,
                label=str(bucket["key"]),
                items_a=bucket["a"]["above"]["items"]["doc_count"],
                items_b=bucket["b"]["above"]["items"]["doc_count"],
                items_both=both[str(i)]["doc_count"],
                mean_score_a=mean_a,
                mean_score_b=mean_b,
                mean_score_difference=(
                    None if mean_a is None or mean_b is None else mean_b - mean_a
                ),
            )
        )
    return Comparison(training_set_a=a, training_set_b=b, threshold=threshold, labels=out)


LABELS_IN_USE: Final = 1000


@router.get(
    "/labels",
    response_model=LabelsResponse,
    responses=error_responses(401),
    summary="The labels in use, per kind (what a reviewer may relabel a prediction to)",
)
async def labels(read: ReadDep) -> LabelsResponse:
    body = labels_in_use_body(LABELS_IN_USE)
    aggs = whole_answer(await read.es.search(index=read.settings.index, body=body))["aggregations"]
    found = {
        kind: [str(b["key"]) for b in aggs[kind.value]["visible"]["labels"]["buckets"]]
        for kind in PredictionKind
    }
    return LabelsResponse(image=found[PredictionKind.IMAGE], object=found[PredictionKind.OBJECT])
