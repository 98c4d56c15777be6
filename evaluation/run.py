"""Run an evaluation against the index: stream the slice, or aggregate the review decisions.

- **Imported truth** streams the slice's items that the source annotated and a requested
  training set tagged, with a point in time and ``search_after`` (``_shard_doc`` order),
  reading only the fields needed, one page ahead while the previous page is matched. Every
  (item, training set, label) is matched once (:mod:`evaluation.matching`) and added to that
  training set's curves and to the curves of each pair that tagged the item.
- **Reviews** answer from aggregations (precision and calibration per score range, label
  confusions): no item is read. Only a comparison streams, over the items both tagged, to
  bootstrap over items.

Review semantics: accepted is right; rejected is wrong; modified is wrong for the model's
label (``original_label``) and box, and the new label counts as an object the model saw and
labelled wrongly (``corrected_to``). Against imported truth, a prediction is judged as the
model made it: its ``original_label`` and ``original_bbox`` when a reviewer changed them,
whatever its review status.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from elasticsearch import AsyncElasticsearch

from evaluation.figures import (
    LabelKey,
    Settings,
    all_ranges,
    compare_pair,
    label_metrics,
    range_key,
    review_metrics,
)
from evaluation.judging import REVIEWED_STATUSES, Accumulator
from evaluation.matching import IOU_THRESHOLDS, iou_threshold_index
from evaluation.report import (
    REVIEWS,
    WORKERS_FROM_ITEMS,
    Confusion,
    EvaluationChoices,
    EvaluationOptions,
    EvaluationReport,
    LabelMetrics,
    NameCount,
    PairComparison,
    ReviewCounts,
    TrainingSetReport,
    option_defaults,
)
from evaluation.streaming import (
    KEEP_ALIVE,
    Connect,
    EvaluationError,
    Judging,
    accumulate,
    accumulate_in_workers,
    check_shards,
)
from store import schema as f
from store.schema import PredictionKind, PredictionStatus

__all__ = ["EvaluationError", "Workers", "evaluate"]

MAX_LABELS: Final = 2000


def _review_aggs(sets: Sequence[str], settings: Settings) -> dict[str, Any]:
    ranges = [
        {"key": range_key(low, high), "from": low, **({} if high is None else {"to": high})}
        for low, high in all_ranges(settings)
    ]
    aggs: dict[str, Any] = {
        "items": {"filters": {"filters": {s: {"term": {f.TAGGED_BY: s}} for s in sets}}}
    }
    for kind in PredictionKind:
        path = kind.path

        def ranged(path: str = path) -> dict[str, Any]:
            return {"range": {"field": f"{path}.{f.PRED_SCORE}", "ranges": ranges, "keyed": True}}

        by_set = {
            "judged": {
                "filter": {
                    "terms": {
                        f"{path}.{f.PRED_STATUS}": [
                            PredictionStatus.ACCEPTED.value,
                            PredictionStatus.REJECTED.value,
                        ]
                    }
                },
                "aggs": {
                    "label": {
                        "terms": {"field": f"{path}.{f.PRED_LABEL}", "size": MAX_LABELS},
                        "aggs": {
                            "status": {
                                "terms": {"field": f"{path}.{f.PRED_STATUS}", "size": 2},
                                "aggs": {"ranges": ranged()},
                            }
                        },
                    }
                },
            },
            "modified": {
                "filter": {"term": {f"{path}.{f.PRED_STATUS}": PredictionStatus.MODIFIED.value}},
                "aggs": {
                    "label": {
                        "terms": {"field": f"{path}.{f.PRED_ORIGINAL_LABEL}", "size": MAX_LABELS},
                        "aggs": {
                            "ranges": ranged(),
                            "to": {
                                "terms": {"field": f"{path}.{f.PRED_LABEL}", "size": MAX_LABELS}
                            },
                        },
                    }
                },
            },
            "pending": {
                "filter": {"term": {f"{path}.{f.PRED_STATUS}": PredictionStatus.PENDING.value}},
                "aggs": {
                    "label": {"terms": {"field": f"{path}.{f.PRED_LABEL}", "size": MAX_LABELS}}
                },
            },
        }
        aggs[kind.value] = {
            "nested": {"path": path},
            "aggs": {
                "sets": {
                    "filter": {"terms": {f"{path}.{f.PRED_TRAINING_SET}": list(sets)}},
                    "aggs": {
                        "set": {
                            "terms": {
                                "field": f"{path}.{f.PRED_TRAINING_SET}",
                                "size": len(sets),
                            },
                            "aggs": by_set,
                        }
                    },
                }
            },
        }
    return aggs


@dataclass
class _ReviewTables:
    """What the review aggregation says about one training set."""

    correct: dict[LabelKey, dict[str, float]] = field(default_factory=dict)
    wrong: dict[LabelKey, dict[str, float]] = field(default_factory=dict)
    counts: dict[LabelKey, dict[str, int]] = field(default_factory=dict)
    confusions: list[Confusion] = field(default_factory=list)


def _ranges(bucket: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(b["doc_count"]) for key, b in bucket["ranges"]["buckets"].items()}


def _read_review_aggs(aggs: Mapping[str, Any], sets: Sequence[str]) -> dict[str, _ReviewTables]:
    tables = {name: _ReviewTables() for name in sets}
    for kind in PredictionKind:
        for set_bucket in aggs[kind.value]["sets"]["set"]["buckets"]:
            table = tables[str(set_bucket["key"])]

            def count(key: LabelKey, name: str, n: int, table: _ReviewTables = table) -> None:
                slot = table.counts.setdefault(key, defaultdict(int))
                slot[name] += n

            for label in set_bucket["judged"]["label"]["buckets"]:
                key = (kind, str(label["key"]))
                for status in label["status"]["buckets"]:
                    right = status["key"] == PredictionStatus.ACCEPTED.value
                    target = table.correct if right else table.wrong
                    into = target.setdefault(key, defaultdict(float))
                    for name, n in _ranges(status).items():
                        into[name] += n
                    count(key, "accepted" if right else "rejected", int(status["doc_count"]))
            for label in set_bucket["modified"]["label"]["buckets"]:
                key = (kind, str(label["key"]))
                into = table.wrong.setdefault(key, defaultdict(float))
                for name, n in _ranges(label).items():
                    into[name] += n
                count(key, "modified_away", int(label["doc_count"]))
                for new in label["to"]["buckets"]:
                    count((kind, str(new["key"])), "corrected_to", int(new["doc_count"]))
                    table.confusions.append(
                        Confusion(
                            kind=kind,
                            original_label=str(label["key"]),
                            label=str(new["key"]),
                            count=int(new["doc_count"]),
                        )
                    )
            for label in set_bucket["pending"]["label"]["buckets"]:
                count((kind, str(label["key"])), "pending", int(label["doc_count"]))
    for table in tables.values():
        table.confusions.sort(key=lambda c: (-c.count, c.kind.value, c.original_label, c.label))
    return tables


def _review_counts(
    counts: Mapping[str, int] | None, *, always: bool = False
) -> ReviewCounts | None:
    if not counts and not always:
        return None
    counts = counts or {}
    return ReviewCounts(
        accepted=counts.get("accepted", 0),
        rejected=counts.get("rejected", 0),
        modified_away=counts.get("modified_away", 0),
        corrected_to=counts.get("corrected_to", 0),
        pending=counts.get("pending", 0),
    )


def _sorted_keys(keys: Iterable[LabelKey]) -> list[LabelKey]:
    return sorted(keys, key=lambda k: (k[0] is PredictionKind.IMAGE, k[1]))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


KNOWN_REVIEWS: Final = [
    "precision of reviewed predictions (accepted right; rejected and modified wrong)",
    "calibration: observed precision per score band and bin",
    "label confusions from modified reviews",
]
UNKNOWN_REVIEWS: Final = [
    "recall, F1, AP and the precision-recall curve: objects the model missed were never shown"
    " to a reviewer, so the reviews cannot count them; import ground truth for these",
]
KNOWN_TRUTH: Final = [
    "TP, FP, FN, precision, recall and F1 at the score threshold",
    "AP at the IoU threshold, AP@0.5 and COCO AP@[.5:.95] (101-point), the PR curve",
    "calibration: observed precision per score band and bin",
    "label confusions from modified reviews",
]


@dataclass(frozen=True)
class Workers:
    """Judge large slices in worker processes: ``count`` of them (one per core suits: the
    work is Python, a core each), each connecting with ``connect``, from ``min_items`` items
    in the slice on (below it, starting the processes costs more than it saves)."""

    count: int
    connect: Connect
    min_items: int = WORKERS_FROM_ITEMS


async def evaluate(
    es: AsyncElasticsearch,
    index: str,
    query: Mapping[str, Any],
    canonical: str,
    options: EvaluationOptions,
    *,
    keep_alive: str = KEEP_ALIVE,
    budget: int | None = None,
    workers: Workers | None = None,
) -> EvaluationReport:
    """The whole evaluation of the slice ``query`` (a translated query), as one report.

    With ``workers``, a slice of at least ``workers.min_items`` items is read and judged by
    that many processes (:func:`evaluation.streaming.accumulate_in_workers`).
    """
    started = time.perf_counter()
    sets = list(options.training_sets)
    reviews_only = options.truth == REVIEWS
    settings = Settings(
        iou_index=iou_threshold_index(options.iou_threshold),
        score_threshold=options.score_threshold,
        calibration_bins=options.calibration_bins,
        truth_known=not reviews_only,
    )
    notes: list[str] = []
    tagged = {"terms": {f.TAGGED_BY: sets}}
    review_body = {
        "query": {"bool": {"filter": [query, tagged]}},
        "size": 0,
        "track_total_hits": True,
        "aggs": _review_aggs(sets, settings),
    }
    if not reviews_only:
        await _check_source(es, index, options.truth)
    response: Mapping[str, Any] = (await es.search(index=index, body=review_body)).body
    check_shards(response)
    tables = _read_review_aggs(response["aggregations"], sets)
    item_counts = {
        name: int(b["doc_count"])
        for name, b in response["aggregations"]["items"]["buckets"].items()
    }

    accumulator = Accumulator(sets, budget=budget, per_set=not reviews_only)
    if not reviews_only or len(sets) > 1:
        filters: list[Any] = [query, tagged]
        if not reviews_only:
            filters.append({"term": {f.TRUTH_SOURCE: options.truth}})
        judging = Judging(
            index=index,
            query={"bool": {"filter": filters}},
            sets=sets,
            truth=None if reviews_only else options.truth,
            budget=budget,
            keep_alive=keep_alive,
        )
        selected = int(response["hits"]["total"]["value"])
        if workers is not None and workers.count > 1 and selected >= workers.min_items:
            accumulator = await accumulate_in_workers(es, workers.connect, judging, workers.count)
        else:
            accumulator = await accumulate(es, judging)
        accumulator.finish()

    reports = []
    for name in sets:
        table = tables[name]
        labels: list[LabelMetrics] = []
        if reviews_only:
            keys = set(table.correct) | set(table.wrong) | set(table.counts)
            for key in _sorted_keys(keys):
                labels.append(
                    review_metrics(
                        key,
                        table.correct.get(key, {}),
                        table.wrong.get(key, {}),
                        _review_counts(table.counts.get(key), always=True),
                        settings,
                    )
                )
            items = item_counts.get(name, 0)
        else:
            curves = accumulator.curves[name]
            image_truth = sum(c.truth for k, c in curves.items() if k[0] is PredictionKind.IMAGE)
            if not image_truth and any(k[0] is PredictionKind.IMAGE for k in curves):
                notes.append(
                    f"{options.truth} has no image-level labels: {name}'s image predictions"
                    " are not evaluated"
                )
            for key in _sorted_keys(curves):
                if key[0] is PredictionKind.IMAGE and not image_truth:
                    continue
                labels.append(
                    label_metrics(key, curves[key], settings, _review_counts(table.counts.get(key)))
                )
            items = accumulator.items[name]
        objects = [m for m in labels if m.kind is PredictionKind.OBJECT]
        reports.append(
            TrainingSetReport(
                training_set=name,
                items=items,
                labels=labels,
                mean_ap=_mean([m.ap for m in objects if m.truth]),
                mean_ap_50_95=_mean([m.ap_50_95 for m in objects if m.truth]),
                confusions=table.confusions,
            )
        )
        if not items:
            notes.append(f"no item of the slice was tagged by {name}")

    comparisons: list[PairComparison] = []
    for offset, (pair, sides) in enumerate(accumulator.pair_curves.items()):
        comparisons.append(
            await asyncio.to_thread(
                compare_pair,
                pair,
                (sides[0], sides[1]),
                accumulator.pair_items[pair],
                settings,
                replicates=options.bootstrap,
                seed=options.seed + offset,
            )
        )
    if reviews_only:
        evaluated = int(response["hits"]["total"]["value"]) if "hits" in response else 0
    else:
        evaluated = max(accumulator.items.values(), default=0)
        notes.append(
            f"only items that {options.truth} annotated are evaluated; a prediction changed in"
            " review is judged by the model's own label and box"
        )
    return EvaluationReport(
        query=canonical,
        truth=options.truth,
        iou_threshold=round(options.iou_threshold, 2),
        score_threshold=options.score_threshold,
        items=evaluated,
        known=KNOWN_REVIEWS if reviews_only else KNOWN_TRUTH,
        unknown=UNKNOWN_REVIEWS if reviews_only else [],
        notes=notes,
        training_sets=reports,
        comparisons=comparisons,
        seconds=round(time.perf_counter() - started, 3),
    )


MAX_SOURCES: Final = 50
MAX_CHOICES: Final = 100


def _names(field: str, size: int) -> dict[str, Any]:
    """The values of a keyword field, most items first (ties by name)."""
    return {"terms": {"field": field, "size": size, "order": [{"_count": "desc"}, {"_key": "asc"}]}}


def _buckets(agg: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(str(b["key"]), int(b["doc_count"])) for b in agg["buckets"]]


async def _check_source(es: AsyncElasticsearch, index: str, source: str) -> None:
    body = {"size": 0, "query": {"term": {f.TRUTH_SOURCE: source}}, "track_total_hits": 1}
    found = await es.search(index=index, body=body)
    if found["hits"]["total"]["value"]:
        return
    every = await es.search(
        index=index,
        body={"size": 0, "aggs": {"sources": _names(f.TRUTH_SOURCE, MAX_SOURCES)}},
    )
    known = [name for name, _ in _buckets(every["aggregations"]["sources"])]
    raise EvaluationError(
        "unknown_truth_source",
        f"no item has ground truth from {source!r}",
        {"truth": source, "known_sources": [REVIEWS, *known]},
    )


async def choices(
    es: AsyncElasticsearch, index: str, query: Mapping[str, Any], canonical: str
) -> EvaluationChoices:
    """What the slice ``query`` can be evaluated with: the training sets that tagged its items,
    the truth sources that annotated them (and how many hold a review), from one aggregation."""
    reviewed = {
        "bool": {
            "should": [
                {
                    "nested": {
                        "path": p,
                        "query": {"terms": {f"{p}.{f.PRED_STATUS}": REVIEWED_STATUSES}},
                    }
                }
                for p in f.PREDICTION_PATHS
            ],
            "minimum_should_match": 1,
        }
    }
    body = {
        "size": 0,
        "query": query,
        "aggs": {
            "training_sets": _names(f.TAGGED_BY, MAX_CHOICES),
            "sources": _names(f.TRUTH_SOURCE, MAX_SOURCES),
            "reviewed": {"filter": reviewed},
        },
    }
    response: Mapping[str, Any] = (await es.search(index=index, body=body)).body
    check_shards(response)
    aggs = response["aggregations"]
    return EvaluationChoices(
        query=canonical,
        training_sets=[NameCount(name=n, items=c) for n, c in _buckets(aggs["training_sets"])],
        truth_sources=[
            NameCount(name=REVIEWS, items=int(aggs["reviewed"]["doc_count"])),
            *(NameCount(name=n, items=c) for n, c in _buckets(aggs["sources"]) if n != REVIEWS),
        ],
        iou_thresholds=[round(t, 2) for t in IOU_THRESHOLDS],
        defaults=option_defaults(),
    )
