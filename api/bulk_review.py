"""Review by query: accept or reject every pending prediction a query matched, safely.

"The predictions a query matched" are those ``/v1/search`` lists as ``matched_predictions``:
the inner hits of the query's positive ``nested`` clauses. :func:`matched_clauses` reads those
clauses out of the very DSL search runs, so the two cannot drift apart. Only pending ones are
touched; a reviewed prediction is never decided again.

- **Dry run** (:func:`preview`): one search counts the items and, per kind, the pending
  matched predictions (a nested ``filter`` aggregation): exact, whatever the size.
- **Apply** (:func:`apply`): sweeps over the items that still hold a pending matched
  prediction, in ``item_id`` order, a page at a time. The page's inner hits name the
  predictions (by nested offset) in exactly the revision the hit's ``_seq_no`` and
  ``_primary_term`` describe; each item is rewritten whole (derived fields and history
  recomputed) in one bulk request, every write conditional on that revision. A write that
  loses a race (409) is left for the next sweep, which runs after a refresh on the item's new
  state. Sweeps continue until none finds anything left (or nothing could be written).

So a run is concurrency-safe (conditional writes), idempotent (only pending predictions are
touched, so running it again changes nothing), and a run killed half way finishes when run
again, without applying anything twice: every item is written whole or not at all, and what
was written is no longer pending. Every change goes into the item's history with the run's
id (pass the same ``run_id`` to a rerun to keep one id).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from elasticsearch import AsyncElasticsearch

from api.errors import whole_answer
from api.models import ReviewAction
from api.review import Change, apply_changes
from search.translate import INNER_HITS_SIZE
from store import schema as f
from store.schema import PredictionKind, PredictionStatus

PAGE_SIZE: Final = 500
# Sweeps without a single successful write before giving up (writers racing this run).
MAX_IDLE_SWEEPS: Final = 3
_KIND_OF_PATH: Final = {kind.path: kind for kind in PredictionKind}
_ERRORS_KEPT: Final = 20


def matched_clauses(hits_query: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per nested path, the queries of the clauses that ask for inner hits (search's "matched")."""
    found: dict[str, list[dict[str, Any]]] = {}
    for nested in _nested_with_inner_hits(hits_query):
        queries = found.setdefault(str(nested["path"]), [])
        if nested["query"] not in queries:
            queries.append(nested["query"])
    return found


def _nested_with_inner_hits(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        nested = node.get("nested")
        if isinstance(nested, Mapping) and "inner_hits" in nested:
            yield nested
        for value in node.values():
            yield from _nested_with_inner_hits(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nested_with_inner_hits(value)


def pending_matched(path: str, queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Predictions on ``path`` that one of ``queries`` matches and that are still pending."""
    pending = {"term": {f"{path}.{f.PRED_STATUS}": PredictionStatus.PENDING.value}}
    matched = queries[0] if len(queries) == 1 else {"bool": {"should": queries}}
    return {"bool": {"filter": [matched, pending]}}


def target_query(
    query: Mapping[str, Any], clauses: Mapping[str, list[dict[str, Any]]], *, inner_hits: bool
) -> dict[str, Any]:
    """Items the query matches that hold a pending matched prediction (with their offsets)."""
    holds = []
    for path, queries in clauses.items():
        nested: dict[str, Any] = {"path": path, "query": pending_matched(path, queries)}
        if inner_hits:
            nested["inner_hits"] = {"name": path, "_source": False, "size": INNER_HITS_SIZE}
        holds.append({"nested": nested})
    return {"bool": {"filter": [query, {"bool": {"should": holds, "minimum_should_match": 1}}]}}


@dataclass(frozen=True, slots=True)
class Preview:
    items: int
    predictions: dict[PredictionKind, int]

    @property
    def total(self) -> int:
        return sum(self.predictions.values())


async def preview(
    es: AsyncElasticsearch, index: str, query: Mapping[str, Any], hits_query: Mapping[str, Any]
) -> Preview:
    """How many items and pending matched predictions a run would change now."""
    clauses = matched_clauses(hits_query)
    if not clauses:
        return Preview(0, {kind: 0 for kind in PredictionKind})
    aggs = {
        path: {
            "nested": {"path": path},
            "aggs": {"todo": {"filter": pending_matched(path, queries)}},
        }
        for path, queries in clauses.items()
    }
    body = {
        "query": target_query(query, clauses, inner_hits=False),
        "size": 0,
        "track_total_hits": True,
        "aggs": aggs,
    }
    answer = whole_answer(await es.search(index=index, body=body))
    counts = {kind: 0 for kind in PredictionKind}
    for path in clauses:
        counts[_KIND_OF_PATH[path]] = int(answer["aggregations"][path]["todo"]["doc_count"])
    return Preview(int(answer["hits"]["total"]["value"]), counts)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class RunResult:
    """What a run did (this call only: a rerun reports what it added)."""

    run_id: str
    items: int = 0
    predictions: int = 0
    conflicts: int = 0
    sweeps: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    remaining: int = 0
    seconds: float = 0.0


def _changes(hit: Mapping[str, Any], action: ReviewAction) -> list[Change]:
    """The pending matched predictions of a hit, from its inner hits, in stored order."""
    source = hit["_source"]
    found: set[tuple[str, int]] = set()
    for result in (hit.get("inner_hits") or {}).values():
        for inner in result["hits"]["hits"]:
            found.add((inner["_nested"]["field"], int(inner["_nested"]["offset"])))
    changes = []
    for path, offset in sorted(found):
        predictions = source.get(path) or ()
        if offset >= len(predictions):
            continue
        prediction = predictions[offset]
        if prediction.get(f.PRED_STATUS, PredictionStatus.PENDING) != PredictionStatus.PENDING:
            continue  # the inner hits and the source are one revision; never decide twice
        pid = prediction.get(f.PRED_ID)
        changes.append(
            Change("" if pid is None else str(pid), action, at=(_KIND_OF_PATH[path], offset))
        )
    return changes


async def apply(
    es: AsyncElasticsearch,
    index: str,
    query: Mapping[str, Any],
    hits_query: Mapping[str, Any],
    *,
    action: ReviewAction,
    who: str,
    api_key: str,
    run_id: str,
    page_size: int = PAGE_SIZE,
) -> RunResult:
    """Apply ``action`` to every pending matched prediction (see the module docstring)."""
    started = time.monotonic()
    result = RunResult(run_id=run_id)
    clauses = matched_clauses(hits_query)
    if not clauses:
        result.seconds = time.monotonic() - started
        return result
    target = target_query(query, clauses, inner_hits=True)
    idle = 0
    while idle < MAX_IDLE_SWEEPS:
        result.sweeps += 1
        found, written = await _sweep(es, index, target, action, who, api_key, result, page_size)
        # The next sweep (or the caller's searches) must see this one's writes.
        await es.indices.refresh(index=index)
        if found == 0:
            break
        idle = 0 if written else idle + 1
    if idle >= MAX_IDLE_SWEEPS:
        left = await preview(es, index, query, hits_query)
        result.remaining = left.total
    result.seconds = time.monotonic() - started
    return result


async def _sweep(
    es: AsyncElasticsearch,
    index: str,
    target: dict[str, Any],
    action: ReviewAction,
    who: str,
    api_key: str,
    result: RunResult,
    page_size: int,
) -> tuple[int, int]:
    """One pass over the items left; (items found, items written)."""
    after: list[Any] | None = None
    found = written = 0
    while True:
        body: dict[str, Any] = {
            "query": target,
            "size": page_size,
            "sort": [{f.ITEM_ID: "asc"}],
            "seq_no_primary_term": True,
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        hits = whole_answer(await es.search(index=index, body=body))["hits"]["hits"]
        if not hits:
            return found, written
        after = hits[-1]["sort"]
        found += len(hits)
        operations: list[dict[str, Any]] = []
        decided: list[int] = []
        for hit in hits:
            changes = _changes(hit, action)
            if not changes:
                continue
            item, _ = apply_changes(
                hit["_source"], changes, who=who, api_key=api_key, note={"run_id": result.run_id}
            )
            operations.append(
                {
                    "index": {
                        "_index": hit["_index"],
                        "_id": hit["_id"],
                        "if_seq_no": hit["_seq_no"],
                        "if_primary_term": hit["_primary_term"],
                    }
                }
            )
            operations.append(item)
            decided.append(len(changes))
        if operations:
            answer = await es.bulk(operations=operations, refresh=False)
            for count, entry in zip(decided, answer["items"], strict=True):
                status = int(entry["index"].get("status", 0))
                if status in (200, 201):
                    written += 1
                    result.items += 1
                    result.predictions += count
                elif status == 409:
                    result.conflicts += 1  # someone wrote it first: the next sweep re-reads it
                else:
                    result.failed += 1
                    if len(result.errors) < _ERRORS_KEPT:
                        error = entry["index"].get("error") or {}
                        result.errors.append(
                            {
                                "item_id": entry["index"].get("_id"),
                                "status": status,
                                "reason": str(error.get("reason", ""))[:300],
                            }
                        )
        if len(hits) < page_size:
            return found, written
