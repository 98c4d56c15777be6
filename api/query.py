"""From a parsed query to the Elasticsearch request bodies the read endpoints send.

Kept apart from the routes so the benchmark sends exactly the same DSL straight to
Elasticsearch. Pagination is ``search_after`` on (sort key, ``item_id``), with the sort values
(and the point-in-time id, when paging a snapshot) carried in an opaque cursor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

import elasticsearch
import orjson
from elasticsearch import AsyncElasticsearch, NotFoundError

from api.cache import PerIndexCache
from api.errors import ApiError
from api.models import SortKey
from api.settings import SCORE_PROBE_THRESHOLD
from search import (
    Node,
    parse,
    render,
    translate,
    used_slices,
    visible_predictions_filter,
)
from search.ast import Band, Similar
from search.fields import BAND_RANGES
from search.metadata_types import check_metadata_types, compares_metadata, metadata_field_types
from search.similarity import has_similarity, split
from search.translate import matched_or_visible_filters
from store import schema as f
from store.schema import PredictionKind, PredictionStatus

Order = Literal["asc", "desc"]
_ORDERS: Final[tuple[Order, ...]] = ("asc", "desc")
_CURSOR_VERSION: Final = 1
# Elasticsearch's own default bound on counted hits.
DEFAULT_TRACK_TOTAL_HITS: Final = 10_000
# Review history can be long and is never needed to list hits; nor is the embedding (hundreds
# of floats; a similarity search says how close each hit is instead).
_HIT_SOURCE: Final = {"excludes": [f.REVIEW_HISTORY, f.EMBEDDING]}
# (kind, nested path) in the order matched predictions are listed, and each path's rank.
_KINDS_IN_ORDER: Final = tuple(
    (kind.value, kind.path) for kind in (PredictionKind.IMAGE, PredictionKind.OBJECT)
)
_KIND_RANK: Final = {path: rank for rank, (_, path) in enumerate(_KINDS_IN_ORDER)}


def default_order(key: SortKey) -> Order:
    return "asc" if key is SortKey.ITEM_ID else "desc"


def sort_clause(ast: Any, key: SortKey, order: Order) -> list[dict[str, Any]]:
    """Sort keys, always ending in the ``item_id`` tiebreaker so ``search_after`` is exact.

    ``score`` sorts on the best (``desc``) or worst (``asc``) score among the predictions the
    query matched: a nested sort filtered like the query's positive nested clauses. With
    conditions on both prediction lists, image scores sort before object scores.
    """
    if key is SortKey.ITEM_ID:
        return [{f.ITEM_ID: {"order": order}}]
    tiebreak = {f.ITEM_ID: {"order": "asc"}}
    if key is SortKey.UPLOADED_AT:
        return [{f.UPLOADED_AT: {"order": order, "missing": "_last"}}, tiebreak]
    filters = (
        matched_or_visible_filters(ast)
        if ast is not None
        else {p: visible_predictions_filter(p) for p in f.PREDICTION_PATHS}
    )
    sorts: list[dict[str, Any]] = []
    for path in f.PREDICTION_PATHS:
        if path not in filters:
            continue
        nested = {"path": path, "filter": filters[path]}
        mode = "max" if order == "desc" else "min"
        field = f"{path}.{f.PRED_SCORE}"
        sorts.append({field: {"order": order, "mode": mode, "missing": "_last", "nested": nested}})
    return [*sorts, tiebreak]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A query parsed once: the AST, its canonical text, and the request pieces built from it.

    ``query`` is the translation (what counts and facets run, and ``/v1/translate`` shows);
    ``hits_query`` the same with inner hits, to tell which predictions of a hit matched.
    ``slices``: the saved slices it used (name -> saved query), written out in ``canonical``.

    With a similarity clause (``similarity``), ``query`` and ``hits_query`` translate the rest
    of the query, the kNN's filter (``rest``: ``None`` when nothing else was asked); the kNN
    query itself needs the vector the API resolves per request (``api.similarity``).
    """

    ast: Any
    canonical: str
    query: dict[str, Any]
    hits_query: dict[str, Any]
    sorts: dict[tuple[SortKey, Order], list[dict[str, Any]]]
    slices: dict[str, str] = field(default_factory=dict)
    similarity: Similar | None = None
    rest: Any = None

    def sort(self, key: SortKey, order: Order) -> list[dict[str, Any]]:
        return self.sorts[key, order]


_MATCH_ALL: Final[dict[str, Any]] = {"match_all": {}}


def similarity_sort(key: SortKey, order: Order, rest: Any) -> list[dict[str, Any]]:
    """A similarity query's hits: by similarity for ``score`` (the default), else as asked."""
    if key is SortKey.SCORE:
        return [{"_score": {"order": order}}, {f.ITEM_ID: {"order": "asc"}}]
    return sort_clause(rest, key, order)


@lru_cache(maxsize=2048)
def parse_query(text: str, max_length: int, slices: tuple[tuple[str, str], ...] = ()) -> Parsed:
    """Parse and translate ``text``, memoised: dashboards send the same queries over and over.

    ``slices`` are the saved slices it may use, ``(name, query)`` pairs (part of the memo key:
    a changed slice is a different query). Raises :class:`search.QueryError` (not cached). The
    returned dicts are shared: treat them as read-only.
    """
    lookup = dict(slices)
    ast = parse(text, max_length=max_length, slices=lookup)
    used = used_slices(text, lookup)
    orders: tuple[Order, ...] = ("asc", "desc")
    if has_similarity(ast):
        clause, rest = split(ast)
        ranked = {
            (key, order): similarity_sort(key, order, rest) for key in SortKey for order in orders
        }
        query = translate(rest) if rest is not None else _MATCH_ALL
        hits = translate(rest, inner_hits=True) if rest is not None else _MATCH_ALL
        return Parsed(ast, render(ast), query, hits, ranked, used, clause, rest)
    sorts: dict[tuple[SortKey, Order], list[dict[str, Any]]] = {
        (key, order): sort_clause(ast, key, order) for key in SortKey for order in orders
    }
    return Parsed(ast, render(ast), translate(ast), translate(ast, inner_hits=True), sorts, used)


@dataclass(frozen=True, slots=True)
class Cursor:
    fingerprint: str
    after: list[Any]
    pit_id: str | None
    # Hits already returned: a similarity query stops after its k neighbours.
    returned: int = 0


def fingerprint(canonical: str, key: SortKey, order: Order) -> str:
    """Ties a cursor to the query and sort that produced it."""
    return hashlib.blake2b(f"{key}|{order}|{canonical}".encode(), digest_size=8).hexdigest()


def encode_cursor(cursor: Cursor) -> str:
    data = {"v": _CURSOR_VERSION, "f": cursor.fingerprint, "a": cursor.after, "p": cursor.pit_id}
    if cursor.returned:
        data["n"] = cursor.returned
    raw = orjson.dumps(data)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _bad_cursor(why: str) -> ApiError:
    return ApiError(400, "invalid_cursor", f"The cursor is not valid: {why}")


def decode_cursor(text: str, *, expect: str, keys: int) -> Cursor:
    """Parse and check a cursor; any damage is a 400, never a request ES would reject."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _bad_cursor("not a cursor this API issued") from None
    if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
        raise _bad_cursor("not a cursor this API issued")
    if data.get("f") != expect:
        raise _bad_cursor("it belongs to a different query or sort")
    after, pit_id = data.get("a"), data.get("p")
    if pit_id is not None and not isinstance(pit_id, str):
        raise _bad_cursor("bad point-in-time id")
    # Searches over a point in time get an implicit ``_shard_doc`` tiebreaker from ES.
    if not isinstance(after, list) or len(after) != keys + (pit_id is not None):
        raise _bad_cursor("wrong number of sort values")
    for value in after:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _bad_cursor("bad sort value")
    returned = data.get("n", 0)
    if isinstance(returned, bool) or not isinstance(returned, int) or returned < 0:
        raise _bad_cursor("bad hit count")
    return Cursor(fingerprint=expect, after=after, pit_id=pit_id, returned=returned)


def search_body(
    parsed: Parsed,
    *,
    size: int,
    key: SortKey,
    order: Order,
    after: Sequence[Any] | None = None,
    pit: Mapping[str, Any] | None = None,
    track_total_hits: int = DEFAULT_TRACK_TOTAL_HITS,
    query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``_search`` body for one page (ask for ``size + 1`` hits to know if more follow).

    Hits are counted exactly up to ``track_total_hits``; past it the total is a lower bound
    (``relation: gte``) and Elasticsearch may stop early: on an index sorted like the page
    (``store.mapping.index_settings``) once the page is full, on other field sorts by
    skipping documents that cannot compete.

    ``query`` replaces the parsed query's (a similarity query's kNN, made per request); its
    hits are scored whatever the sort, so each one can say how similar it is.
    """
    body: dict[str, Any] = {
        "query": parsed.hits_query if query is None else query,
        "size": size,
        "sort": parsed.sort(key, order),
        "_source": _HIT_SOURCE,
        "track_total_hits": track_total_hits,
    }
    if query is not None:
        body["track_scores"] = True
    if after is not None:
        body["search_after"] = list(after)
    if pit is not None:
        body["pit"] = dict(pit)
    return body


def probe_body(
    parsed: Parsed, *, size: int, order: Order, threshold: float
) -> dict[str, Any] | None:
    """A first page in score order, looked for only among items whose sort key passes
    ``threshold`` (at least it for ``desc``, at most for ``asc``); ``None`` if the order has
    no score key.

    Every item left out sorts after every item kept (its first sort key is worse or missing),
    so when this finds ``size`` hits they are exactly the first ``size`` of the whole query,
    found without computing the sort key of every match. It counts nothing.
    """
    first = parsed.sort(SortKey.SCORE, order)[0]
    [(field, spec)] = first.items()
    nested = spec.get("nested")
    if nested is None:
        return None
    bound = {"gte" if order == "desc" else "lte": threshold}
    passes = {
        "nested": {
            "path": nested["path"],
            "query": {"bool": {"filter": [nested["filter"], {"range": {field: bound}}]}},
        }
    }
    return {
        **search_body(parsed, size=size, key=SortKey.SCORE, order=order),
        "query": {"bool": {"filter": [parsed.hits_query, passes]}},
        "track_total_hits": False,
    }


async def probed_first_page(
    es: AsyncElasticsearch,
    index: str,
    parsed: Parsed,
    *,
    size: int,
    order: Order,
    track_total_hits: int,
    enabled: bool = True,
) -> dict[str, Any] | None:
    """A first page in descending score order found by ``probe_body`` at
    ``SCORE_PROBE_THRESHOLD``, with the bounded total counted alongside, shaped like a search
    answer (``hits.hits``, ``hits.total``).

    ``None`` when the probe does not fill the page, when ``enabled`` is false or the order is
    ascending, or when Elasticsearch refused either search or did not answer it whole: then
    the caller runs the plain search (which reports any error as it always does).
    """
    if not enabled or order != "desc":
        return None
    probe = probe_body(parsed, size=size, order=order, threshold=SCORE_PROBE_THRESHOLD)
    if probe is None:
        return None
    count = {"query": parsed.query, "size": 0, "track_total_hits": track_total_hits}
    try:
        found, counted = await asyncio.gather(
            es.search(index=index, body=probe, request_cache=True),
            es.search(index=index, body=count, request_cache=True),
        )
    except elasticsearch.ApiError:
        return None
    for answer in (found, counted):
        if (answer.get("_shards") or {}).get("failed"):
            return None
    hits = found["hits"]["hits"]
    if len(hits) < size:
        return None
    return {"hits": {"hits": hits, "total": counted["hits"]["total"]}}


def matched_predictions(hit: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which predictions of a hit satisfied the query, from the inner hits' nested offsets.

    Plain dicts shaped like :class:`api.models.MatchedPrediction` (this is the hot path).
    """
    inner_hits = hit.get("inner_hits")
    if not inner_hits:
        return []
    # (kind's rank, offset): image predictions first, each list in stored order, no repeats.
    found: set[tuple[int, int]] = set()
    for result in inner_hits.values():
        for inner in result["hits"]["hits"]:
            nested = inner["_nested"]
            found.add((_KIND_RANK[nested["field"]], nested["offset"]))
    source = hit.get("_source") or {}
    matched = []
    for rank, offset in sorted(found):
        kind, path = _KINDS_IN_ORDER[rank]
        predictions = source.get(path) or ()
        pid = predictions[offset].get(f.PRED_ID) if offset < len(predictions) else None
        matched.append({"kind": kind, "offset": offset, "id": None if pid is None else str(pid)})
    return matched


def answer_hits(hits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A page's hits as ``/v1/search`` answers them: the stored item and what it matched."""
    out = []
    for hit in hits:
        source = hit["_source"]
        source.setdefault(f.ITEM_ID, hit["_id"])
        out.append({"item": source, "matched_predictions": matched_predictions(hit)})
    return out


# --- facets ------------------------------------------------------------------------------------


def _band_range(band: Band) -> dict[str, Any]:
    low, high, high_inclusive = BAND_RANGES[band]
    if not high_inclusive:
        return {"key": band.value, "from": low, "to": high}
    # ``to`` is exclusive and Elasticsearch rounds it to the float field's precision, so no
    # bound just above ``high`` works; no score exceeds SCORE_MAX, so the top band needs none.
    assert high == f.SCORE_MAX, band
    return {"key": band.value, "from": low}


# The score bands of ``search.fields.BAND_RANGES``, as a ``range`` aggregation's ranges.
SCORE_BANDS: Final = tuple(_band_range(band) for band in BAND_RANGES)

# The score histogram's bins: HISTOGRAM_BINS equal steps over SCORE_MIN..SCORE_MAX.
HISTOGRAM_BINS: Final = 20


def histogram_edges() -> list[float]:
    """The bins' edges as written in queries (``-1.0, -0.9, ..., 1.0``)."""
    step = (f.SCORE_MAX - f.SCORE_MIN) / HISTOGRAM_BINS
    return [round(f.SCORE_MIN + i * step, 6) for i in range(HISTOGRAM_BINS + 1)]


def _histogram_ranges() -> list[dict[str, Any]]:
    """Bins that count a score exactly where ``score >= low AND score < high`` finds it
    (tested on the edges, where float32 rounding could disagree)."""
    edges = histogram_edges()
    ranges = []
    for low, high in itertools.pairwise(edges):
        entry: dict[str, Any] = {"key": f"{low}", "from": low}
        if high < f.SCORE_MAX:
            entry["to"] = high
        ranges.append(entry)  # the top bin includes SCORE_MAX, like the `high` band
    return ranges


_ITEMS: Final[dict[str, Any]] = {"items": {"reverse_nested": {}}}


def _kind_aggs(path: str, labels: int) -> dict[str, Any]:
    field = f"{path}.{{}}".format
    return {
        "nested": {"path": path},
        "aggs": {
            "visible": {
                "filter": visible_predictions_filter(path),
                "aggs": {
                    "labels": {
                        "terms": {"field": field(f.PRED_LABEL), "size": labels},
                        "aggs": {
                            **_ITEMS,
                            "bands": {
                                "range": {
                                    "field": field(f.PRED_SCORE),
                                    "keyed": True,
                                    "ranges": list(SCORE_BANDS),
                                }
                            },
                        },
                    },
                    "training_sets": {
                        "terms": {"field": field(f.PRED_TRAINING_SET), "size": 100},
                        "aggs": _ITEMS,
                    },
                    "histogram": {
                        "range": {
                            "field": field(f.PRED_SCORE),
                            "keyed": True,
                            "ranges": _histogram_ranges(),
                        }
                    },
                },
            },
            "statuses": {
                "terms": {"field": field(f.PRED_STATUS), "size": len(PredictionStatus)},
                "aggs": _ITEMS,
            },
        },
    }


def labels_in_use_body(size: int) -> dict[str, Any]:
    """Every kind's most frequent labels over the whole index (rejected predictions left out)."""
    aggs = {
        kind.value: {
            "nested": {"path": kind.path},
            "aggs": {
                "visible": {
                    "filter": visible_predictions_filter(kind.path),
                    "aggs": {
                        "labels": {"terms": {"field": f"{kind.path}.{f.PRED_LABEL}", "size": size}}
                    },
                }
            },
        }
        for kind in PredictionKind
    }
    return {"size": 0, "track_total_hits": False, "aggs": aggs}


def _compare_aggs(path: str, labels: int, a: str, b: str, threshold: float) -> dict[str, Any]:
    ts, score = f"{path}.{f.PRED_TRAINING_SET}", f"{path}.{f.PRED_SCORE}"

    def side(name: str) -> dict[str, Any]:
        return {
            "filter": {"term": {ts: name}},
            "aggs": {
                "mean": {"avg": {"field": score}},
                "above": {"filter": {"range": {score: {"gte": threshold}}}, "aggs": _ITEMS},
            },
        }

    sets = {"bool": {"filter": [{"terms": {ts: [a, b]}}, visible_predictions_filter(path)]}}
    return {
        "nested": {"path": path},
        "aggs": {
            "sets": {
                "filter": sets,
                "aggs": {
                    "labels": {
                        "terms": {"field": f"{path}.{f.PRED_LABEL}", "size": labels},
                        "aggs": {"a": side(a), "b": side(b)},
                    }
                },
            }
        },
    }


def facets_body(
    query: dict[str, Any], *, labels: int, compare: tuple[str, str, float] | None
) -> dict[str, Any]:
    aggs: dict[str, Any] = {
        "autotag_status": {"terms": {"field": f.AUTOTAG_STATUS, "size": 10}},
    }
    for kind in PredictionKind:
        aggs[f"kind_{kind.value}"] = _kind_aggs(kind.path, labels)
        if compare is not None:
            aggs[f"compare_{kind.value}"] = _compare_aggs(kind.path, labels, *compare)
    return {"query": query, "size": 0, "track_total_hits": True, "aggs": aggs}


def both_predict(path: str, label: str, a: str, b: str, threshold: float) -> dict[str, Any]:
    """Items where both training sets predict ``label`` at or above ``threshold``."""

    def one(name: str) -> dict[str, Any]:
        conditions = [
            {"term": {f"{path}.{f.PRED_LABEL}": label}},
            {"term": {f"{path}.{f.PRED_TRAINING_SET}": name}},
            {"range": {f"{path}.{f.PRED_SCORE}": {"gte": threshold}}},
            visible_predictions_filter(path),
        ]
        return {"nested": {"path": path, "query": {"bool": {"filter": conditions}}}}

    return {"bool": {"filter": [one(a), one(b)]}}


METADATA_TYPES_TTL_S: Final = 30.0
_metadata_types: PerIndexCache[dict[str, str]] = PerIndexCache(METADATA_TYPES_TTL_S)


async def check_metadata(es: AsyncElasticsearch, index: str, ast: Node, text: str) -> None:
    """Refuse, with a position, text compared with a numeric ``metadata.<key>``.

    The index's metadata types are read at most every ``METADATA_TYPES_TTL_S`` seconds per
    process, and only for queries that compare metadata at all.
    """
    if not compares_metadata(ast):
        return

    async def load() -> dict[str, str]:
        mappings = await es.indices.get_mapping(index=index)
        return metadata_field_types(mappings.body)

    try:
        types = await _metadata_types.get(index, load)
    except NotFoundError:
        return
    check_metadata_types(ast, types, text)
