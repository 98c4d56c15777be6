"""Runs: what to tag, with which models, under which training set, and how far it got.

Runs live in their own index (``AUTOTAG_RUNS_INDEX``, default ``autotag-runs``), so they survive
restarts of the API and of the workers. It holds four kinds of document:

- a **run** (id ``run-…``): the selection (a query translated at submission, a dataset, or a
  list of items), the model set checked at submission (:mod:`store.model_choice`), the training
  set, the state (queued, running, done, failed, cancelled) and, once planned, how many items
  it selected and how many were already tagged by its training set (``skipped``);
- a **batch** (id ``RUN/PLAN/SEQ``): up to ``AUTOTAG_RUN_BATCH_SIZE`` item ids of a planned run,
  which one worker at a time claims under a lease and finishes with its counts and failures;
- a **lock** (id ``lock/TRAINING_SET``): the run allowed to write that training set now, so two
  runs of one training set never interleave their writes;
- a **dataset** setting (id ``dataset/NAME``): the model set and training set that tag the
  dataset's newly registered items (incremental runs).

Progress is never counted twice: a run's counts are the sums over its *finished* batches, read
with an aggregation, plus the items live batches have written so far. Every state change is a
conditional write (``if_seq_no``/``if_primary_term``, or ``op_type=create``).

The operations here are :mod:`store.calls` generators: the API runs them with its async client,
workers and the CLI with a sync one. What workers alone do (plan, claim, lease, finish) is in
:mod:`store.run_claims`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from elasticsearch import ConflictError, NotFoundError

from store import schema as f
from store.admin import ensure_index_op
from store.calls import Call, Op
from store.clock import utc_iso
from store.documents import prepare_item
from store.model_choice import ModelSet


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunState.DONE, RunState.FAILED, RunState.CANCELLED)


class BatchState(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"


class Origin(StrEnum):
    SUBMITTED = "submitted"  # POST /v1/runs
    INCREMENTAL = "incremental"  # new items of a dataset with an auto-tagging setting


class SelectionKind(StrEnum):
    QUERY = "query"
    DATASET = "dataset"
    ITEMS = "items"


# Document kinds.
KIND_RUN: Final = "run"
KIND_BATCH: Final = "batch"
KIND_LOCK: Final = "lock"
KIND_DATASET: Final = "dataset"

# Field names of the runs index.
KIND: Final = "kind"
RUN_ID: Final = "run_id"
STATE: Final = "state"
ORIGIN: Final = "origin"
TRAINING_SET: Final = "training_set"
MODELS: Final = "models"
MODEL_SET: Final = "model_set"
ITEMS_INDEX: Final = "items_index"
SELECTION: Final = "selection"
SELECTION_KIND: Final = "selection_kind"
DATASET: Final = "dataset"
CREATED_AT: Final = "created_at"
STARTED_AT: Final = "started_at"
FINISHED_AT: Final = "finished_at"
UPDATED_AT: Final = "updated_at"
TOTAL: Final = "total"
SKIPPED: Final = "skipped"
PLANNED: Final = "planned"
PLAN_ID: Final = "plan_id"
PLAN_KEY: Final = "plan_key"
BATCHES: Final = "batches"
SEQ: Final = "seq"
ITEM_IDS: Final = "item_ids"
ITEM_COUNT: Final = "item_count"
LEASE_OWNER: Final = "lease_owner"
LEASE_UNTIL: Final = "lease_until"  # epoch milliseconds
ATTEMPTS: Final = "attempts"
CLAIMED_AT: Final = "claimed_at"  # epoch milliseconds, on batches
DONE_AT: Final = "done_at"  # epoch milliseconds, on batches
TAGGED: Final = "tagged"
FAILED: Final = "failed"
PREDICTIONS: Final = "predictions"
IN_PROGRESS: Final = "in_progress"
FAILURES: Final = "failures"
ERROR: Final = "error"

# A run's failures listed in its view; the count is always complete.
FAILURES_SHOWN: Final = 100
# Items one incremental run collects before a new one is started.
MAX_INCREMENTAL_ITEMS: Final = 10_000
# Tries of a read-modify-write against concurrent writers.
MAX_ATTEMPTS: Final = 10
# Elasticsearch refuses longer document ids (UTF-8 bytes), and with them the whole bulk request.
MAX_ID_BYTES: Final = 512

_DISABLED: Final = {"type": "object", "enabled": False}
_KEYWORD: Final = {"type": "keyword"}
_MILLIS: Final = {"type": "date", "format": "epoch_millis"}


def runs_mapping() -> dict[str, Any]:
    """The runs index's mapping: strict; selections, item ids and failures are kept, not indexed."""
    keywords = (KIND, RUN_ID, STATE, ORIGIN, TRAINING_SET, MODELS, ITEMS_INDEX, SELECTION_KIND)
    properties: dict[str, Any] = {name: _KEYWORD for name in keywords}
    properties.update({name: _KEYWORD for name in (DATASET, PLAN_ID, PLAN_KEY, LEASE_OWNER)})
    properties.update(
        {name: {"type": "date"} for name in (CREATED_AT, STARTED_AT, FINISHED_AT, UPDATED_AT)}
    )
    properties.update({name: _MILLIS for name in (LEASE_UNTIL, CLAIMED_AT, DONE_AT)})
    counts = (TOTAL, SKIPPED, BATCHES, SEQ, ITEM_COUNT, ATTEMPTS, TAGGED, FAILED, PREDICTIONS)
    properties.update({name: {"type": "long"} for name in (*counts, IN_PROGRESS)})
    properties[PLANNED] = {"type": "boolean"}
    properties.update({name: _DISABLED for name in (MODEL_SET, SELECTION, ITEM_IDS, FAILURES)})
    properties[ERROR] = _DISABLED
    return {"dynamic": "strict", "properties": properties}


def ensure_runs_index(index: str) -> Op[None]:
    """Create the runs index when it is missing (two creators at once are fine)."""
    exists = yield Call("indices.exists", {"index": index})
    if exists:
        return
    try:
        yield Call(
            "indices.create",
            {
                "index": index,
                "mappings": runs_mapping(),
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            },
        )
    except Exception as error:  # a concurrent creator won: that is what we wanted
        if "resource_already_exists" not in str(error):
            raise


# --- time ---------------------------------------------------------------------------------


def now_ms() -> int:
    """Wall-clock epoch milliseconds: leases are compared across workers (keep clocks in sync)."""
    return int(time.time() * 1000)


def _iso_ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def new_run_id(at: datetime | None = None) -> str:
    """``run-20261122-101500-3fa9c1``: sortable by time, unique by its random tail."""
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    return f"run-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def lock_id(training_set: str) -> str:
    return f"lock/{training_set}"


def dataset_doc_id(dataset: str) -> str:
    return f"dataset/{dataset}"


def batch_id(plan_key: str, seq: int) -> str:
    return f"{plan_key}/{seq:06d}"


# --- what a run tags ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What a run tags: a query (its canonical text and translation), a dataset, or items."""

    kind: SelectionKind
    query: str | None = None
    dsl: Mapping[str, Any] | None = None
    dataset: str | None = None
    item_ids: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind.value}
        if self.query is not None:
            doc["query"] = self.query
            doc["dsl"] = dict(self.dsl or {})
        if self.dataset is not None:
            doc["dataset"] = self.dataset
        if self.kind is SelectionKind.ITEMS:
            doc[ITEM_IDS] = list(self.item_ids)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Selection:
        return cls(
            kind=SelectionKind(doc["kind"]),
            query=doc.get("query"),
            dsl=doc.get("dsl"),
            dataset=doc.get("dataset"),
            item_ids=tuple(doc.get(ITEM_IDS) or ()),
        )

    def es_query(self) -> dict[str, Any]:
        """The items query that selects what this run tags."""
        if self.kind is SelectionKind.QUERY:
            return dict(self.dsl or {"match_all": {}})
        if self.kind is SelectionKind.DATASET:
            return {"term": {f.DATASET: self.dataset}}
        return {"ids": {"values": list(self.item_ids)}}

    def describe(self) -> dict[str, Any]:
        """What the run view shows of it (the translated DSL and item ids left out)."""
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.query is not None:
            out["query"] = self.query
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.kind is SelectionKind.ITEMS:
            out["items"] = len(self.item_ids)
        return out


def new_run(
    *,
    selection: Selection,
    models: ModelSet,
    training_set: str,
    items_index: str,
    origin: Origin = Origin.SUBMITTED,
    run_id: str | None = None,
) -> dict[str, Any]:
    """A queued run's document."""
    now = utc_iso()
    return {
        KIND: KIND_RUN,
        RUN_ID: run_id or new_run_id(),
        STATE: RunState.QUEUED.value,
        ORIGIN: origin.value,
        TRAINING_SET: training_set,
        MODELS: models.name,
        MODEL_SET: models.to_doc(),
        ITEMS_INDEX: items_index,
        SELECTION: selection.to_doc(),
        SELECTION_KIND: selection.kind.value,
        DATASET: selection.dataset,
        ITEM_COUNT: len(selection.item_ids),
        CREATED_AT: now,
        UPDATED_AT: now,
        PLANNED: False,
    }


def submit_run(runs_index: str, run: Mapping[str, Any]) -> Op[dict[str, Any]]:
    """Store a queued run (refreshed at once, so workers and listings see it)."""
    yield from ensure_runs_index(runs_index)
    yield Call(
        "index",
        {
            "index": runs_index,
            "id": run[RUN_ID],
            "document": dict(run),
            "op_type": "create",
            "refresh": "true",
        },
    )
    return dict(run)


# --- reading runs ---------------------------------------------------------------------------


def _batch_aggs(now: int) -> dict[str, Any]:
    live = {
        "bool": {
            "filter": [
                {"term": {STATE: BatchState.CLAIMED.value}},
                {"range": {LEASE_UNTIL: {"gt": now}}},
            ]
        }
    }
    return {
        "states": {"terms": {"field": STATE, "size": len(BatchState)}},
        "done": {
            "filter": {"term": {STATE: BatchState.DONE.value}},
            "aggs": {
                TAGGED: {"sum": {"field": TAGGED}},
                FAILED: {"sum": {"field": FAILED}},
                PREDICTIONS: {"sum": {"field": PREDICTIONS}},
                "last_done": {"max": {"field": DONE_AT}},
            },
        },
        "live": {
            "filter": live,
            "aggs": {
                IN_PROGRESS: {"sum": {"field": IN_PROGRESS}},
                "workers": {"terms": {"field": LEASE_OWNER, "size": 100}},
            },
        },
        "first_claim": {"min": {"field": CLAIMED_AT}},
    }


def _int(value: Any) -> int:
    return int(value or 0)


def run_view(
    run: Mapping[str, Any],
    batches: Mapping[str, Any] | None,
    failures: Sequence[Mapping[str, Any]] = (),
    *,
    now: int | None = None,
) -> dict[str, Any]:
    """What the API and ``autotag runs watch`` show of a run: its document and the aggregations
    of its current plan's batches (``None`` before it is planned)."""
    now = now_ms() if now is None else now
    state = RunState(run[STATE])
    batches = batches or {}
    states = {b["key"]: int(b["doc_count"]) for b in batches.get("states", {}).get("buckets", ())}
    done_aggs = batches.get("done", {})
    live = batches.get("live", {})
    tagged = _int(done_aggs.get(TAGGED, {}).get("value"))
    failed = _int(done_aggs.get(FAILED, {}).get("value"))
    predictions = _int(done_aggs.get(PREDICTIONS, {}).get("value"))
    in_progress = 0 if state.finished else _int(live.get(IN_PROGRESS, {}).get("value"))
    skipped = _int(run.get(SKIPPED))
    planned = bool(run.get(PLANNED))
    total = _int(run.get(TOTAL)) if planned else None
    done = skipped + tagged + failed
    # The rate counts the work done (skipped items cost nothing), from the first claim.
    first = batches.get("first_claim", {}).get("value")
    end = _iso_ms(run.get(FINISHED_AT)) if state.finished else now
    rate = eta = None
    worked = tagged + failed + in_progress
    if first is not None and end is not None and end > first and worked:
        rate = worked / ((end - first) / 1000)
        if not state.finished and total is not None:
            eta = max(0, total - done - in_progress) / rate
    selection = Selection.from_doc(run[SELECTION])
    return {
        "run_id": run[RUN_ID],
        "state": state.value,
        "origin": run.get(ORIGIN, Origin.SUBMITTED.value),
        "training_set": run[TRAINING_SET],
        "models": run[MODELS],
        "items_index": run[ITEMS_INDEX],
        "selection": selection.describe(),
        "created_at": run[CREATED_AT],
        "started_at": run.get(STARTED_AT),
        "finished_at": run.get(FINISHED_AT),
        "items": {
            "total": total,
            "done": done,
            "tagged": tagged,
            "skipped": skipped,
            "failed": failed,
            "in_progress": in_progress,
            "predictions": predictions,
        },
        "rate": rate,
        "eta_seconds": eta,
        "batches": {
            "total": _int(run.get(BATCHES)) if planned else None,
            **{s.value: states.get(s.value, 0) for s in BatchState},
        },
        "workers": []
        if state.finished
        else [b["key"] for b in live.get("workers", {}).get("buckets", ())],
        "failures": list(failures)[:FAILURES_SHOWN],
        "error": run.get(ERROR),
    }


def plan_batches(*plan_keys: str) -> dict[str, Any]:
    """The batches of these plans (runs carry their plan key too)."""
    return {
        "bool": {"filter": [{"term": {KIND: KIND_BATCH}}, {"terms": {PLAN_KEY: list(plan_keys)}}]}
    }


def _failures_query(plan_key: str) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                plan_batches(plan_key),
                {"term": {STATE: BatchState.DONE.value}},
                {"range": {FAILED: {"gt": 0}}},
            ]
        }
    }


def get_run(runs_index: str, run_id: str, *, failures: bool = True) -> Op[dict[str, Any] | None]:
    """The view of one run, or ``None`` when there is no such run."""
    try:
        got = yield Call("get", {"index": runs_index, "id": run_id})
    except NotFoundError:
        return None
    run = got["_source"]
    if run.get(KIND) != KIND_RUN:
        return None
    now = now_ms()
    plan_key = run.get(PLAN_KEY)
    if not plan_key:
        return run_view(run, None, now=now)
    found = yield Call(
        "search",
        {
            "index": runs_index,
            "size": 0,
            "query": plan_batches(plan_key),
            "aggs": _batch_aggs(now),
        },
    )
    listed: list[Mapping[str, Any]] = []
    if failures:
        failed = yield Call(
            "search",
            {
                "index": runs_index,
                "size": 50,
                "query": _failures_query(plan_key),
                "sort": [{SEQ: "asc"}],
                "source_includes": [FAILURES],
            },
        )
        for hit in failed["hits"]["hits"]:
            listed.extend(hit["_source"].get(FAILURES) or ())
            if len(listed) >= FAILURES_SHOWN:
                break
    return run_view(run, found["aggregations"], listed, now=now)


def list_runs(
    runs_index: str,
    *,
    states: Iterable[RunState] = (),
    origin: Origin | None = None,
    training_set: str | None = None,
    size: int = 20,
) -> Op[list[dict[str, Any]]]:
    """The most recent runs (newest first), with their progress; failures are not listed."""
    conditions: list[dict[str, Any]] = [{"term": {KIND: KIND_RUN}}]
    wanted = [s.value for s in states]
    if wanted:
        conditions.append({"terms": {STATE: wanted}})
    if origin is not None:
        conditions.append({"term": {ORIGIN: origin.value}})
    if training_set is not None:
        conditions.append({"term": {TRAINING_SET: training_set}})
    try:
        found = yield Call(
            "search",
            {
                "index": runs_index,
                "size": size,
                "query": {"bool": {"filter": conditions}},
                "sort": [{CREATED_AT: "desc"}, {RUN_ID: "desc"}],
            },
        )
    except NotFoundError:
        return []
    runs = [hit["_source"] for hit in found["hits"]["hits"]]
    keys = [run[PLAN_KEY] for run in runs if run.get(PLAN_KEY)]
    per_plan: dict[str, Any] = {}
    now = now_ms()
    if keys:
        aggs = yield Call(
            "search",
            {
                "index": runs_index,
                "size": 0,
                "query": plan_batches(*keys),
                "aggs": {
                    "plans": {
                        "terms": {"field": PLAN_KEY, "size": len(keys)},
                        "aggs": _batch_aggs(now),
                    }
                },
            },
        )
        per_plan = {b["key"]: b for b in aggs["aggregations"]["plans"]["buckets"]}
    return [run_view(run, per_plan.get(run.get(PLAN_KEY) or ""), now=now) for run in runs]


@dataclass(frozen=True)
class Cancelled:
    """The outcome of a cancel: the run's view after it, and whether this call cancelled it."""

    changed: bool
    state: RunState


def cancel_run(runs_index: str, run_id: str) -> Op[Cancelled | None]:
    """Cancel a queued or running run; a finished one is left as it is (``changed`` False).

    Workers see the state at their next lease renewal and stop writing; the training set's lock
    frees itself once no batch of the run is held (:mod:`store.run_claims`).
    """
    for _ in range(MAX_ATTEMPTS):
        try:
            got = yield Call("get", {"index": runs_index, "id": run_id})
        except NotFoundError:
            return None
        run = dict(got["_source"])
        if run.get(KIND) != KIND_RUN:
            return None
        state = RunState(run[STATE])
        if state.finished:
            return Cancelled(False, state)
        now = utc_iso()
        run.update({STATE: RunState.CANCELLED.value, FINISHED_AT: now, UPDATED_AT: now})
        try:
            yield Call(
                "index",
                {
                    "index": runs_index,
                    "id": run_id,
                    "document": run,
                    "if_seq_no": got["_seq_no"],
                    "if_primary_term": got["_primary_term"],
                    "refresh": "true",
                },
            )
        except ConflictError:
            continue
        return Cancelled(True, RunState.CANCELLED)
    raise RuntimeError(f"run {run_id} kept changing; cancel again")


# --- per-dataset auto-tagging ----------------------------------------------------------------


@dataclass(frozen=True)
class DatasetAutotag:
    """The model set and training set that tag a dataset's new items as they are registered."""

    dataset: str
    models: ModelSet
    training_set: str
    updated_at: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            KIND: KIND_DATASET,
            DATASET: self.dataset,
            MODELS: self.models.name,
            MODEL_SET: self.models.to_doc(),
            TRAINING_SET: self.training_set,
            UPDATED_AT: self.updated_at or utc_iso(),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DatasetAutotag:
        return cls(
            dataset=doc[DATASET],
            models=ModelSet.from_doc(doc[MODEL_SET]),
            training_set=doc[TRAINING_SET],
            updated_at=doc.get(UPDATED_AT),
        )


def put_dataset_autotag(runs_index: str, setting: DatasetAutotag) -> Op[DatasetAutotag]:
    yield from ensure_runs_index(runs_index)
    doc = setting.to_doc()
    yield Call(
        "index",
        {"index": runs_index, "id": dataset_doc_id(setting.dataset), "document": doc},
    )
    return DatasetAutotag.from_doc(doc)


def get_dataset_autotags(runs_index: str, datasets: Sequence[str]) -> Op[dict[str, DatasetAutotag]]:
    """The auto-tagging settings of ``datasets`` that have one (realtime)."""
    if not datasets:
        return {}
    try:
        got = yield Call(
            "mget", {"index": runs_index, "ids": [dataset_doc_id(d) for d in datasets]}
        )
    except NotFoundError:
        return {}
    found = {}
    for doc in got["docs"]:
        if doc.get("found"):
            setting = DatasetAutotag.from_doc(doc["_source"])
            found[setting.dataset] = setting
    return found


def delete_dataset_autotag(runs_index: str, dataset: str) -> Op[bool]:
    """Stop auto-tagging ``dataset``; False when it had no setting."""
    try:
        yield Call("delete", {"index": runs_index, "id": dataset_doc_id(dataset)})
    except NotFoundError:
        return False
    return True


# --- registering new items ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewItem:
    """An item to register: where its image is, and what is known about it."""

    item_id: str
    uri: str
    dataset: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    uploaded_at: str | None = None

    def document(self, now: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            f.ITEM_ID: self.item_id,
            f.URI: self.uri,
            f.UPLOADED_AT: self.uploaded_at or now,
            f.UPDATED_AT: now,
        }
        if self.dataset is not None:
            doc[f.DATASET] = self.dataset
        if self.metadata:
            doc[f.METADATA] = dict(self.metadata)
        return prepare_item(doc)


@dataclass
class Registration:
    """What a registration did, item by item, and the incremental runs it queued."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def register_items(
    items_index: str, runs_index: str, items: Sequence[NewItem], *, autotag: bool = True
) -> Op[Registration]:
    """Store new items (an item already there is left as it is) and, with ``autotag``, queue
    their tagging for each dataset that has an auto-tagging setting."""
    result = Registration()
    if not items:
        return result
    yield from ensure_index_op(items_index)
    now = utc_iso()
    operations: list[Mapping[str, Any]] = []
    sent: list[NewItem] = []
    for item in items:
        if len(item.item_id.encode()) > MAX_ID_BYTES:
            result.failed.append((item.item_id, f"item id longer than {MAX_ID_BYTES} bytes"))
            continue
        operations.append({"create": {"_index": items_index, "_id": item.item_id}})
        operations.append(item.document(now))
        sent.append(item)
    if not sent:
        return result
    response = yield Call(
        "bulk",
        {"operations": operations, "filter_path": ["items.*.status", "items.*.error.reason"]},
    )
    datasets: dict[str, list[str]] = {}
    for item, outcome in zip(sent, response["items"], strict=True):
        status = next(iter(outcome.values()))
        code = int(status.get("status", 500))
        if code < 300:
            result.created.append(item.item_id)
            if item.dataset is not None:
                datasets.setdefault(item.dataset, []).append(item.item_id)
        elif code == 409:
            result.existing.append(item.item_id)
        else:
            reason = status.get("error", {}).get("reason", f"status {code}")
            result.failed.append((item.item_id, str(reason)))
    if autotag and datasets:
        settings = yield from get_dataset_autotags(runs_index, sorted(datasets))
        for name, setting in sorted(settings.items()):
            run_id = yield from enqueue_incremental(
                runs_index, items_index, setting, datasets[name]
            )
            result.runs.append(run_id)
    return result


def enqueue_incremental(
    runs_index: str, items_index: str, setting: DatasetAutotag, item_ids: Sequence[str]
) -> Op[str]:
    """Add ``item_ids`` to the dataset's queued incremental run, or queue a new one.

    While a worker has not started it, every registration joins the same run, so a stream of
    uploads makes a few runs, not one run per upload.
    """
    conditions = [
        {"term": {KIND: KIND_RUN}},
        {"term": {ORIGIN: Origin.INCREMENTAL.value}},
        {"term": {STATE: RunState.QUEUED.value}},
        {"term": {DATASET: setting.dataset}},
        {"term": {TRAINING_SET: setting.training_set}},
        {"term": {MODELS: setting.models.name}},
    ]
    for _ in range(MAX_ATTEMPTS):
        found = yield Call(
            "search",
            {
                "index": runs_index,
                "size": 1,
                "query": {"bool": {"filter": conditions}},
                "sort": [{CREATED_AT: "desc"}],
                "source": False,
            },
        )
        hits = found["hits"]["hits"]
        if not hits:
            break
        run_id = hits[0]["_id"]
        try:
            got = yield Call("get", {"index": runs_index, "id": run_id})
        except NotFoundError:
            break
        run = dict(got["_source"])
        selection = Selection.from_doc(run[SELECTION])
        merged = list(dict.fromkeys((*selection.item_ids, *item_ids)))
        if run[STATE] != RunState.QUEUED.value or len(merged) > MAX_INCREMENTAL_ITEMS:
            break
        run[SELECTION] = Selection(
            SelectionKind.ITEMS, dataset=setting.dataset, item_ids=tuple(merged)
        ).to_doc()
        run[ITEM_COUNT] = len(merged)
        run[UPDATED_AT] = utc_iso()
        try:
            yield Call(
                "index",
                {
                    "index": runs_index,
                    "id": run_id,
                    "document": run,
                    "if_seq_no": got["_seq_no"],
                    "if_primary_term": got["_primary_term"],
                },
            )
        except ConflictError:
            continue  # a worker started it, or another registration joined: look again
        return str(run_id)
    run = new_run(
        selection=Selection(SelectionKind.ITEMS, dataset=setting.dataset, item_ids=tuple(item_ids)),
        models=setting.models,
        training_set=setting.training_set,
        items_index=items_index,
        origin=Origin.INCREMENTAL,
    )
    yield from submit_run(runs_index, run)
    return str(run[RUN_ID])
