"""Which items an export holds, read page by page over a point in time (bounded memory).

Every strategy reads one consistent snapshot (a point in time) with ``search_after``: at most a
page per stream is held, whatever the size of the export.

- **all** (no sampling): every matching item, by ``item_id``.
- **random** ``n``, ``seed``: the ``n`` items with the highest ``random_score`` drawn from the
  seed and the item id. The same seed gives the same sample of the same index, and an item's
  draw does not depend on the other items (a larger ``n`` extends a smaller one's sample).
- **uncertain** ``n``: the ``n`` items whose matched prediction is nearest the decision
  boundary, ``|score|`` smallest (0 is chance on autotag's signed scale). Matched predictions
  are those the query's positive clauses select (``search.matched_prediction_filters``, as the
  API's inner hits and score sort use), or every visible one when the query names no
  prediction. Elasticsearch cannot sort on ``|score|`` without scripts, so four sorted streams
  are merged: per prediction list, the smallest non-negative score (ascending) and the largest
  negative one (descending). Each stream's hits carry all four values; an item is taken from
  the stream that holds its smallest margin, so it comes once, in ``(margin, item_id)`` order.
  Items without a scored matched prediction are never uncertain and are left out.
- **stratified** ``n`` per label, ``seed``: for each label among the matched predictions (image
  labels, then object labels, each alphabetically), the ``n`` items holding such a prediction
  with the highest ``random_score``. An item that several labels pick is written once (it
  counts for each), so memory grows with the sample, never with the index.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from elasticsearch import AsyncElasticsearch

from export.spec import Sampling, Strategy
from store import schema as f
from store.schema import PredictionKind

Query = dict[str, Any]
PAGE_SIZE: Final = 500
# Distinct labels a stratified export may have per prediction list.
MAX_STRATA: Final = 10_000
_SOURCE: Final = {"excludes": [f.REVIEW_HISTORY]}
# Sort value for "no such prediction": beyond any score.
_NONE_ABOVE: Final = 2.0
_NONE_BELOW: Final = -2.0


class ExportFailed(Exception):
    """Elasticsearch gave an incomplete answer (shards failed) or refused a request."""


class Snapshot:
    """A point in time on an index: every search of an export reads the same data."""

    def __init__(self, es: AsyncElasticsearch, index: str, keep_alive: str) -> None:
        self.es = es
        self.index = index
        self.keep_alive = keep_alive
        self.pit_id: str | None = None

    async def open(self) -> None:
        opened = await self.es.open_point_in_time(index=self.index, keep_alive=self.keep_alive)
        self.pit_id = str(opened["id"])

    async def search(self, body: Mapping[str, Any]) -> Any:
        assert self.pit_id is not None, "open() first"
        response = await self.es.search(
            body={**body, "pit": {"id": self.pit_id, "keep_alive": self.keep_alive}}
        )
        shards = response.get("_shards") or {}
        if shards.get("failed"):
            raise ExportFailed(f"{shards['failed']} of {shards.get('total')} shards failed")
        self.pit_id = str(response.get("pit_id", self.pit_id))
        return response

    async def close(self) -> None:
        if self.pit_id is not None:
            pit_id, self.pit_id = self.pit_id, None
            with contextlib.suppress(Exception):  # else it expires by itself
                await self.es.close_point_in_time(id=pit_id)


@dataclass(frozen=True)
class Selection:
    """The items (``query``), the predictions the query matched per nested path (``matched``,
    relative to the path), and the sampling."""

    query: Query
    matched: Mapping[str, Query]
    sampling: Sampling | None = None
    page_size: int = PAGE_SIZE


def _source(hit: Mapping[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = hit["_source"]
    source.setdefault(f.ITEM_ID, hit["_id"])
    return source


async def _paged(
    snapshot: Snapshot, body: Query, page_size: int, limit: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Hits of ``body`` (which must sort), page by page with ``search_after``."""
    after: list[Any] | None = None
    taken = 0
    while limit is None or taken < limit:
        size = page_size if limit is None else min(page_size, limit - taken)
        page: Query = {**body, "size": size, "track_total_hits": False}
        if after is not None:
            page["search_after"] = after
        hits = (await snapshot.search(page))["hits"]["hits"]
        for hit in hits:
            yield hit
        taken += len(hits)
        if len(hits) < size:
            return
        after = hits[-1]["sort"]


def _random(query: Query, seed: int) -> Query:
    function = {"random_score": {"seed": seed, "field": f.ITEM_ID}}
    return {"function_score": {"query": query, "functions": [function], "boost_mode": "replace"}}


_BY_ID: Final = {f.ITEM_ID: {"order": "asc"}}
_RANDOM_ORDER: Final = [{"_score": {"order": "desc"}}, _BY_ID]


async def select(snapshot: Snapshot, selection: Selection) -> AsyncIterator[dict[str, Any]]:
    """The items of ``selection``, as stored (review history left out), in export order."""
    sampling = selection.sampling
    if sampling is None:
        body = {"query": selection.query, "sort": [_BY_ID], "_source": _SOURCE}
        async for hit in _paged(snapshot, body, selection.page_size):
            yield _source(hit)
    elif sampling.strategy is Strategy.RANDOM:
        body = {
            "query": _random(selection.query, sampling.seed),
            "sort": _RANDOM_ORDER,
            "_source": _SOURCE,
        }
        async for hit in _paged(snapshot, body, selection.page_size, sampling.n):
            yield _source(hit)
    elif sampling.strategy is Strategy.UNCERTAIN:
        async for item in _uncertain(snapshot, selection, sampling.n):
            yield item
    else:
        async for item in _stratified(snapshot, selection, sampling):
            yield item


# --- uncertain ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    """One sort key: the non-negative (``above``) or negative scores of the matched
    predictions on ``path``, nearest zero first."""

    path: str
    above: bool

    def sort(self, matched: Query) -> Query:
        score = f"{self.path}.{f.PRED_SCORE}"
        side = {"range": {score: {"gte": 0.0} if self.above else {"lt": 0.0}}}
        return {
            score: {
                "order": "asc" if self.above else "desc",
                "mode": "min" if self.above else "max",
                "missing": _NONE_ABOVE if self.above else _NONE_BELOW,
                "nested": {"path": self.path, "filter": {"bool": {"filter": [matched, side]}}},
            }
        }

    def margin(self, value: Any) -> float:
        """``|score|`` from this key's sort value; infinite for "none"."""
        number = float(value)
        if self.above:
            return number if number <= f.SCORE_MAX else math.inf
        return -number if number >= f.SCORE_MIN else math.inf


@dataclass
class _Stream:
    """Hits sorted by one key, then item id, carrying the other keys' values after that."""

    number: int
    keys: list[_Key]
    hits: AsyncIterator[dict[str, Any]]
    head: tuple[float, str, dict[str, Any]] | None = field(default=None)
    # Each key's place in the fixed order, to break ties between equal margins.
    ranks: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ranks = [key_rank(key) for key in self.keys]

    def margins(self, hit: Mapping[str, Any]) -> list[float]:
        """Margins of every key, in the order of ``keys`` (the stream's own key first)."""
        values = hit["sort"]
        own = [self.keys[0].margin(values[0])]
        others = [key.margin(value) for key, value in zip(self.keys[1:], values[2:], strict=False)]
        return own + others

    async def advance(self) -> None:
        """Move ``head`` to the next hit whose smallest margin is this stream's own key's
        (ties: the stream first in the fixed order); ``None`` at the end."""
        self.head = None
        async for hit in self.hits:
            margins = self.margins(hit)
            own = margins[0]
            if own == math.inf:
                return  # sorted: nothing after this has a prediction on this side
            best = min(zip(margins, self.ranks, strict=True))
            if best == (own, self.ranks[0]):
                self.head = (own, str(hit["_source"].get(f.ITEM_ID, hit["_id"])), hit)
                return


def key_rank(key: _Key) -> int:
    return f.PREDICTION_PATHS.index(key.path) * 2 + (0 if key.above else 1)


async def _uncertain(
    snapshot: Snapshot, selection: Selection, n: int
) -> AsyncIterator[dict[str, Any]]:
    keys = [_Key(path, above) for path in selection.matched for above in (True, False)]
    keys.sort(key=key_rank)
    streams: list[_Stream] = []
    for number, own in enumerate(keys):
        ordered = [own, *(key for key in keys if key is not own)]
        sort = [own.sort(selection.matched[own.path]), _BY_ID]
        sort += [key.sort(selection.matched[key.path]) for key in ordered[1:]]
        body = {"query": selection.query, "sort": sort, "_source": _SOURCE}
        stream = _Stream(number, ordered, _paged(snapshot, body, selection.page_size))
        await stream.advance()
        streams.append(stream)
    heap = [(s.head[0], s.head[1], s.number) for s in streams if s.head is not None]
    heapq.heapify(heap)
    taken = 0
    while heap and taken < n:
        _, _, number = heapq.heappop(heap)
        stream = streams[number]
        assert stream.head is not None
        yield _source(stream.head[2])
        taken += 1
        await stream.advance()
        if stream.head is not None:
            heapq.heappush(heap, (stream.head[0], stream.head[1], number))


# --- stratified --------------------------------------------------------------------------------


async def strata(snapshot: Snapshot, selection: Selection) -> list[tuple[PredictionKind, str]]:
    """The labels of the matched predictions: (kind, label), image labels first, sorted."""
    aggs: Query = {}
    for kind in PredictionKind:
        if kind.path not in selection.matched:
            continue
        aggs[kind.value] = {
            "nested": {"path": kind.path},
            "aggs": {
                "matched": {
                    "filter": selection.matched[kind.path],
                    "aggs": {
                        "labels": {
                            "terms": {
                                "field": f"{kind.path}.{f.PRED_LABEL}",
                                "size": MAX_STRATA,
                                "order": {"_key": "asc"},
                            }
                        }
                    },
                }
            },
        }
    response = await snapshot.search({"query": selection.query, "size": 0, "aggs": aggs})
    found: list[tuple[PredictionKind, str]] = []
    for kind in PredictionKind:
        if kind.value not in response.get("aggregations", {}):
            continue
        labels = response["aggregations"][kind.value]["matched"]["labels"]
        if labels.get("sum_other_doc_count"):
            raise ExportFailed(
                f"more than {MAX_STRATA} {kind.value} labels to stratify: narrow the query"
            )
        found += [(kind, str(bucket["key"])) for bucket in labels["buckets"]]
    return found


async def _stratified(
    snapshot: Snapshot, selection: Selection, sampling: Sampling
) -> AsyncIterator[dict[str, Any]]:
    emitted: set[str] = set()
    for kind, label in await strata(snapshot, selection):
        path = kind.path
        holds = {"term": {f"{path}.{f.PRED_LABEL}": label}}
        inner = {"bool": {"filter": [selection.matched[path], holds]}}
        query = {"bool": {"filter": [selection.query, {"nested": {"path": path, "query": inner}}]}}
        body = {"query": _random(query, sampling.seed), "sort": _RANDOM_ORDER, "_source": _SOURCE}
        async for hit in _paged(snapshot, body, selection.page_size, sampling.n):
            item = _source(hit)
            item_id = str(item[f.ITEM_ID])
            if item_id not in emitted:
                emitted.add(item_id)
                yield item
