"""What workers do to the runs index: plan runs, claim batches under leases, finish them.

Every step is a conditional write, so any number of workers, on any machines, can share the
runs without a coordinator:

- **Planning** a queued run: take its training set's lock (``op_type=create`` of
  ``lock/TRAINING_SET``), mark the run running under a planning lease, list the selected items
  that the training set has not tagged yet (sorted by id, through a point in time), and write
  them as batches of a new *plan*; the run then records ``total``, ``skipped`` and its batch
  count. A planner that dies leaves a running, unplanned run whose lease expires: another
  worker plans it again under a new plan id (the old plan's batches are deleted, and never
  counted: views aggregate the run's current ``plan_key`` only).
- **Claiming** a batch: a pending batch, or a claimed one whose lease expired (its worker was
  killed), is taken with ``if_seq_no``/``if_primary_term``; of two workers, one wins. The
  holder renews its lease while it works and stops writing once it cannot.
- **Finishing**: the batch records what it did (conditional on still holding it); the worker
  that finishes the last batch marks the run done and frees the lock. Any worker repairs a run
  whose finisher died (:func:`finish_complete_runs`).
- **Locks**: a lock whose run is finished and holds no live batch is stale and is taken over,
  so a cancelled run's training set is free once its last batch lets go.

Exactly once: a batch taken over re-reads which of its items the training set already tagged
(the dead worker's writes) and counts them as tagged without writing them again, because the
plan left out everything tagged before the run. The item writer's own conditional writes
(:mod:`store.writer`) make a write by a worker that lost its lease a no-op, never a duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError

from store import runs as r
from store import schema as f
from store.clock import utc_iso
from store.runs import BatchState, RunState, Selection
from store.snapshot import snapshot_pages

log = logging.getLogger("autotag.runs")

# Item ids read per page while planning, and batch documents per bulk write.
_PLAN_PAGE: Final = 5000
_BATCH_DOCS_PER_BULK: Final = 200
# Batches considered per claim; a worker picks one of the first few at random, so two workers
# rarely race for the same one.
_CLAIM_CANDIDATES: Final = 8
_CLAIM_SPREAD: Final = 3
# Runs whose batches are written: the ones that batches are claimed of and finished for.
_PLANNED_RUNNING: Final = {
    "bool": {
        "filter": [
            {"term": {r.KIND: r.KIND_RUN}},
            {"term": {r.STATE: RunState.RUNNING.value}},
            {"term": {r.PLANNED: True}},
        ]
    }
}


@dataclass
class Claim:
    """A batch this worker holds: what to tag, and the revision its lease was last written at."""

    batch_id: str
    run: dict[str, Any]
    item_ids: list[str]
    seq_no: int
    primary_term: int
    doc: dict[str, Any]
    lease_until: int

    @property
    def run_id(self) -> str:
        return str(self.run[r.RUN_ID])


@dataclass
class Planned:
    """The outcome of planning one run."""

    run_id: str
    state: RunState
    total: int = 0
    skipped: int = 0
    batches: int = 0


@dataclass
class RunStore:
    """The runs index as one worker sees it (``owner`` names the worker in leases)."""

    client: Elasticsearch
    index: str
    owner: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:8]}")
    lease_ms: int = 30_000
    batch_size: int = 256

    # --- reading -------------------------------------------------------------------------

    def search(self, **body: Any) -> list[dict[str, Any]]:
        try:
            found = self.client.search(index=self.index, **body)
        except NotFoundError:
            return []
        hits: list[dict[str, Any]] = found["hits"]["hits"]
        return hits

    def has_unfinished_runs(self) -> bool:
        """Whether any run is queued or running."""
        unfinished = {
            "bool": {
                "filter": [
                    {"term": {r.KIND: r.KIND_RUN}},
                    {"terms": {r.STATE: [RunState.QUEUED.value, RunState.RUNNING.value]}},
                ]
            }
        }
        return bool(self.search(query=unfinished, size=1, source=False))

    def get_run(self, run_id: str) -> tuple[dict[str, Any], int, int] | None:
        """A run's document and revision, realtime."""
        try:
            got = self.client.get(index=self.index, id=run_id)
        except NotFoundError:
            return None
        return dict(got["_source"]), int(got["_seq_no"]), int(got["_primary_term"])

    def run_state(self, run_id: str) -> RunState | None:
        got = self.get_run(run_id)
        return None if got is None else RunState(got[0][r.STATE])

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.index)

    # --- locks ---------------------------------------------------------------------------

    def acquire_lock(self, training_set: str, run_id: str) -> bool:
        """Make ``run_id`` the run that writes ``training_set``; False while another one does."""
        doc = {r.KIND: r.KIND_LOCK, r.TRAINING_SET: training_set, r.RUN_ID: run_id}
        for _ in range(r.MAX_ATTEMPTS):
            doc[r.UPDATED_AT] = utc_iso()
            try:
                self.client.index(
                    index=self.index, id=r.lock_id(training_set), document=doc, op_type="create"
                )
                return True
            except ConflictError:
                pass
            try:
                held = self.client.get(index=self.index, id=r.lock_id(training_set))
            except NotFoundError:
                continue  # released meanwhile
            holder = str(held["_source"][r.RUN_ID])
            if holder == run_id:
                return True
            if not self._lock_is_stale(holder):
                return False
            try:
                self.client.delete(
                    index=self.index,
                    id=r.lock_id(training_set),
                    if_seq_no=held["_seq_no"],
                    if_primary_term=held["_primary_term"],
                )
            except (ConflictError, NotFoundError):
                continue
        return False

    def _lock_is_stale(self, holder: str) -> bool:
        state = self.run_state(holder)
        if state is not None and not state.finished:
            return False
        # A finished (cancelled, failed) run may still have a worker writing a batch.
        self.refresh()
        live = {
            "bool": {
                "filter": [
                    {"term": {r.KIND: r.KIND_BATCH}},
                    {"term": {r.RUN_ID: holder}},
                    {"term": {r.STATE: BatchState.CLAIMED.value}},
                    {"range": {r.LEASE_UNTIL: {"gt": r.now_ms()}}},
                ]
            }
        }
        try:
            count = int(self.client.count(index=self.index, query=live)["count"])
        except NotFoundError:
            count = 0
        return count == 0

    def release_lock(self, training_set: str, run_id: str) -> None:
        """Free ``training_set`` if ``run_id`` holds it."""
        try:
            held = self.client.get(index=self.index, id=r.lock_id(training_set))
        except NotFoundError:
            return
        if held["_source"].get(r.RUN_ID) != run_id:
            return
        with contextlib.suppress(ConflictError, NotFoundError):
            self.client.delete(
                index=self.index,
                id=r.lock_id(training_set),
                if_seq_no=held["_seq_no"],
                if_primary_term=held["_primary_term"],
            )

    # --- run state changes ------------------------------------------------------------------

    def _update_run(
        self, run_id: str, change: Mapping[str, Any], *, expect: tuple[int, int] | None = None
    ) -> tuple[dict[str, Any], int, int] | None:
        """Write ``change`` into the run; with ``expect``, only at that revision (else None)."""
        got = self.get_run(run_id)
        if got is None:
            return None
        run, seq_no, term = got
        if expect is not None and (seq_no, term) != expect:
            return None
        run = {**run, **change, r.UPDATED_AT: utc_iso()}
        try:
            written = self.client.index(
                index=self.index,
                id=run_id,
                document=run,
                if_seq_no=seq_no,
                if_primary_term=term,
                refresh="true",
            )
        except ConflictError:
            return None
        return run, int(written["_seq_no"]), int(written["_primary_term"])

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a run failed (unless it finished meanwhile) and free its training set."""
        for _ in range(r.MAX_ATTEMPTS):
            got = self.get_run(run_id)
            if got is None:
                return
            run, seq_no, term = got
            if RunState(run[r.STATE]).finished:
                break
            now = utc_iso()
            change = {r.STATE: RunState.FAILED.value, r.ERROR: error, r.FINISHED_AT: now}
            if self._update_run(run_id, change, expect=(seq_no, term)) is not None:
                log.warning("run %s failed: %s", run_id, error)
                break
        got = self.get_run(run_id)
        if got is not None:
            self.release_lock(str(got[0][r.TRAINING_SET]), run_id)

    # --- planning ------------------------------------------------------------------------

    def plan_next(self) -> Planned | None:
        """Plan the oldest queued run whose training set is free (or re-plan one whose planner
        died); None when there is nothing to plan."""
        now = r.now_ms()
        waiting = {
            "bool": {
                "filter": [{"term": {r.KIND: r.KIND_RUN}}],
                "should": [
                    {"term": {r.STATE: RunState.QUEUED.value}},
                    {
                        "bool": {
                            "filter": [
                                {"term": {r.STATE: RunState.RUNNING.value}},
                                {"term": {r.PLANNED: False}},
                                {"range": {r.LEASE_UNTIL: {"lt": now}}},
                            ]
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }
        busy: set[str] = set()
        for hit in self.search(
            query=waiting, size=50, sort=[{r.CREATED_AT: "asc"}, {r.RUN_ID: "asc"}]
        ):
            training_set = str(hit["_source"][r.TRAINING_SET])
            if training_set in busy:
                continue  # an older run of this training set goes first
            planned = self.plan(str(hit["_id"]))
            if planned is not None:
                return planned
            busy.add(training_set)
        return None

    def plan(self, run_id: str) -> Planned | None:
        """Plan ``run_id`` if it is waiting and its training set is free."""
        got = self.get_run(run_id)
        if got is None:
            return None
        run, seq_no, term = got
        state = RunState(run[r.STATE])
        replanning = state is RunState.RUNNING and not run.get(r.PLANNED)
        if replanning and int(run.get(r.LEASE_UNTIL) or 0) >= r.now_ms():
            return None
        if state is not RunState.QUEUED and not replanning:
            return None
        training_set = str(run[r.TRAINING_SET])
        if not self.acquire_lock(training_set, run_id):
            return None
        plan_id = uuid.uuid4().hex[:8]
        plan_key = f"{run_id}/{plan_id}"
        change = {
            r.STATE: RunState.RUNNING.value,
            r.STARTED_AT: run.get(r.STARTED_AT) or utc_iso(),
            r.PLANNED: False,
            r.PLAN_ID: plan_id,
            r.PLAN_KEY: plan_key,
            r.LEASE_OWNER: self.owner,
            r.LEASE_UNTIL: r.now_ms() + self.lease_ms,
        }
        written = self._update_run(run_id, change, expect=(seq_no, term))
        if written is None:
            return None  # someone else moved it first
        if replanning:
            self._delete_other_plans(run_id, keep=plan_key)
        try:
            return self._write_plan(written, plan_key)
        except _PlanLost:
            log.info("planning of run %s was taken over or cancelled", run_id)
            return None
        except ApiError as error:
            if error.status_code in (400, 404):  # a query the items index refuses, or no index
                self.fail_run(run_id, f"the selection cannot be read: {_reason(error)}")
                return Planned(run_id, RunState.FAILED)
            raise

    def _write_plan(self, written: tuple[dict[str, Any], int, int], plan_key: str) -> Planned:
        run, seq_no, term = written
        run_id = str(run[r.RUN_ID])
        selection = Selection.from_doc(run[r.SELECTION])
        items_index = str(run[r.ITEMS_INDEX])
        training_set = str(run[r.TRAINING_SET])
        tagged = {"term": {f.TAGGED_BY: training_set}}
        chosen = selection.es_query()
        # Searches see what the last refresh made visible: items registered a moment ago (an
        # incremental run's) and tags written a moment ago would be missed, and an item never
        # planned is never tagged. One refresh per planned run makes them all visible.
        self.client.indices.refresh(index=items_index)
        skipped = int(
            self.client.count(index=items_index, query={"bool": {"filter": [chosen, tagged]}})[
                "count"
            ]
        )
        todo_query = {"bool": {"filter": [chosen], "must_not": [tagged]}}
        batches = 0
        total = skipped
        pending: list[dict[str, Any]] = []
        revision = (seq_no, term)
        for ids in _chunks(self._scan_ids(items_index, todo_query), self.batch_size):
            total += len(ids)
            pending.append(self._batch_doc(run, plan_key, batches, ids))
            batches += 1
            if len(pending) >= _BATCH_DOCS_PER_BULK:
                self._create_batches(pending)
                pending = []
                renewed = self._update_run(
                    run_id, {r.LEASE_UNTIL: r.now_ms() + self.lease_ms}, expect=revision
                )
                if renewed is None:
                    raise _PlanLost(run_id)
                revision = renewed[1:]
        self._create_batches(pending)
        finished = batches == 0
        change: dict[str, Any] = {
            r.PLANNED: True,
            r.TOTAL: total,
            r.SKIPPED: skipped,
            r.BATCHES: batches,
            r.LEASE_OWNER: None,
            r.LEASE_UNTIL: None,
        }
        if finished:  # nothing left to tag: an empty selection is done, not an error
            change.update({r.STATE: RunState.DONE.value, r.FINISHED_AT: utc_iso()})
        if self._update_run(run_id, change, expect=revision) is None:
            raise _PlanLost(run_id)
        if finished:
            self.release_lock(training_set, run_id)
        else:
            self.refresh()  # the batches are claimable at once
        state = RunState.DONE if finished else RunState.RUNNING
        log.info(
            "run %s planned: %d items, %d skipped, %d batches", run_id, total, skipped, batches
        )
        return Planned(run_id, state, total, skipped, batches)

    def _batch_doc(
        self, run: Mapping[str, Any], plan_key: str, seq: int, ids: list[str]
    ) -> dict[str, Any]:
        return {
            r.KIND: r.KIND_BATCH,
            r.RUN_ID: run[r.RUN_ID],
            r.PLAN_KEY: plan_key,
            r.SEQ: seq,
            r.STATE: BatchState.PENDING.value,
            r.ITEM_IDS: ids,
            r.ITEM_COUNT: len(ids),
            r.TRAINING_SET: run[r.TRAINING_SET],
            r.ATTEMPTS: 0,
            r.UPDATED_AT: utc_iso(),
        }

    def _create_batches(self, docs: Sequence[dict[str, Any]]) -> None:
        if not docs:
            return
        operations: list[Mapping[str, Any]] = []
        for doc in docs:
            key = r.batch_id(doc[r.PLAN_KEY], doc[r.SEQ])
            operations += [{"create": {"_index": self.index, "_id": key}}, doc]
        response = self.client.bulk(operations=operations, filter_path=["errors", "items.*.error"])
        if response.get("errors"):
            raise RuntimeError(f"writing batches failed: {response['items'][:1]}")

    def _scan_ids(self, index: str, query: Mapping[str, Any]) -> Iterator[str]:
        """Every matching item id, sorted, through a point in time (a consistent snapshot)."""
        pages = snapshot_pages(
            self.client,
            index,
            size=_PLAN_PAGE,
            source=False,
            query=query,
            sort=[{f.ITEM_ID: "asc"}],
        )
        for hits in pages:
            for hit in hits:
                yield str(hit["_id"])

    def _delete_other_plans(self, run_id: str, *, keep: str) -> None:
        stale = {
            "bool": {
                "filter": [{"term": {r.KIND: r.KIND_BATCH}}, {"term": {r.RUN_ID: run_id}}],
                "must_not": [{"term": {r.PLAN_KEY: keep}}],
            }
        }
        self.refresh()
        while hits := self.search(query=stale, size=1000, source=False):
            operations = [{"delete": {"_index": self.index, "_id": hit["_id"]}} for hit in hits]
            self.client.bulk(operations=operations, refresh="true")

    # --- batches ---------------------------------------------------------------------------

    def claim(self) -> Claim | None:
        """Take a pending batch of a running run, or one whose holder's lease expired."""
        active = self.search(
            query=_PLANNED_RUNNING,
            size=200,
            source_includes=[r.PLAN_KEY],
        )
        keys = [hit["_source"][r.PLAN_KEY] for hit in active]
        if not keys:
            return None
        now = r.now_ms()
        claimable = {
            "bool": {
                "filter": [r.plan_batches(*keys)],
                "should": [
                    {"term": {r.STATE: BatchState.PENDING.value}},
                    {
                        "bool": {
                            "filter": [
                                {"term": {r.STATE: BatchState.CLAIMED.value}},
                                {"range": {r.LEASE_UNTIL: {"lt": now}}},
                            ]
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }
        hits = self.search(
            query=claimable,
            size=_CLAIM_CANDIDATES,
            sort=[{r.RUN_ID: "asc"}, {r.SEQ: "asc"}],  # oldest run first (run ids sort by time)
            seq_no_primary_term=True,
        )
        head, tail = hits[:_CLAIM_SPREAD], hits[_CLAIM_SPREAD:]
        random.shuffle(head)
        for hit in head + tail:
            claim = self._take(hit)
            if claim is not None:
                return claim
        return None

    def _take(self, hit: Mapping[str, Any]) -> Claim | None:
        doc = dict(hit["_source"])
        now = r.now_ms()
        if doc[r.STATE] == BatchState.CLAIMED.value:
            log.warning(
                "taking over batch %s from %s (lease expired)", hit["_id"], doc.get(r.LEASE_OWNER)
            )
        doc.update(
            {
                r.STATE: BatchState.CLAIMED.value,
                r.LEASE_OWNER: self.owner,
                r.LEASE_UNTIL: now + self.lease_ms,
                r.CLAIMED_AT: now,
                r.ATTEMPTS: int(doc.get(r.ATTEMPTS) or 0) + 1,
                r.IN_PROGRESS: 0,
                r.UPDATED_AT: utc_iso(),
            }
        )
        try:
            written = self.client.index(
                index=self.index,
                id=hit["_id"],
                document=doc,
                if_seq_no=hit["_seq_no"],
                if_primary_term=hit["_primary_term"],
            )
        except ConflictError:
            return None
        claim = Claim(
            batch_id=str(hit["_id"]),
            run={},
            item_ids=list(doc[r.ITEM_IDS]),
            seq_no=int(written["_seq_no"]),
            primary_term=int(written["_primary_term"]),
            doc=doc,
            lease_until=int(doc[r.LEASE_UNTIL]),
        )
        got = self.get_run(str(doc[r.RUN_ID]))
        run = None if got is None else got[0]
        if (
            run is None
            or run[r.STATE] != RunState.RUNNING.value
            or run.get(r.PLAN_KEY) != doc[r.PLAN_KEY]
        ):
            self.release(claim)  # cancelled or failed since the search
            return None
        claim.run = run
        return claim

    def _write_batch(self, claim: Claim, change: Mapping[str, Any]) -> bool:
        doc = {**claim.doc, **change, r.UPDATED_AT: utc_iso()}
        try:
            written = self.client.index(
                index=self.index,
                id=claim.batch_id,
                document=doc,
                if_seq_no=claim.seq_no,
                if_primary_term=claim.primary_term,
            )
        except (ConflictError, NotFoundError):
            return False
        claim.doc = doc
        claim.seq_no = int(written["_seq_no"])
        claim.primary_term = int(written["_primary_term"])
        return True

    def renew(self, claim: Claim, in_progress: int) -> bool:
        """Extend the lease (and show progress); False when the batch is no longer ours."""
        until = r.now_ms() + self.lease_ms
        if not self._write_batch(claim, {r.LEASE_UNTIL: until, r.IN_PROGRESS: in_progress}):
            return False
        claim.lease_until = until
        return True

    def release(self, claim: Claim) -> None:
        """Give a batch back unfinished (it is claimable at once)."""
        change = {r.STATE: BatchState.PENDING.value, r.LEASE_OWNER: None, r.LEASE_UNTIL: None}
        try:
            self._write_batch(claim, {**change, r.IN_PROGRESS: 0})
        except Exception as error:  # its lease will expire anyway
            log.info("could not release batch %s: %s", claim.batch_id, error)

    def finish(
        self,
        claim: Claim,
        *,
        tagged: int,
        failures: Sequence[Mapping[str, Any]],
        predictions: int,
    ) -> bool:
        """Record what the batch did; False if another worker took it over meanwhile."""
        change = {
            r.STATE: BatchState.DONE.value,
            r.TAGGED: tagged,
            r.FAILED: len(failures),
            r.PREDICTIONS: predictions,
            r.FAILURES: list(failures),
            r.DONE_AT: r.now_ms(),
            r.IN_PROGRESS: 0,
            r.LEASE_UNTIL: None,
        }
        return self._write_batch(claim, change)

    # --- finishing runs ---------------------------------------------------------------------

    def finish_if_complete(self, run_id: str) -> bool:
        """Mark a planned running run done once all its batches are; True if this call did."""
        got = self.get_run(run_id)
        if got is None:
            return False
        run, seq_no, term = got
        if run[r.STATE] != RunState.RUNNING.value or not run.get(r.PLANNED):
            return False
        self.refresh()
        open_batches = {
            "bool": {
                "filter": [r.plan_batches(str(run[r.PLAN_KEY]))],
                "must_not": [{"term": {r.STATE: BatchState.DONE.value}}],
            }
        }
        if int(self.client.count(index=self.index, query=open_batches)["count"]):
            return False
        change = {r.STATE: RunState.DONE.value, r.FINISHED_AT: utc_iso()}
        if self._update_run(run_id, change, expect=(seq_no, term)) is None:
            return False
        self.release_lock(str(run[r.TRAINING_SET]), run_id)
        log.info("run %s done", run_id)
        return True

    def finish_complete_runs(self) -> int:
        """Finish every running run whose batches are all done (a finisher that died)."""
        running = self.search(
            query=_PLANNED_RUNNING,
            size=200,
            source=False,
        )
        return sum(self.finish_if_complete(str(hit["_id"])) for hit in running)


class _PlanLost(RuntimeError):
    """Another worker took the planning of a run over (our lease had expired)."""


def _chunks(ids: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item_id in ids:
        chunk.append(item_id)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _reason(error: ApiError) -> str:
    body = error.body if isinstance(error.body, Mapping) else {}
    cause = body.get("error", {})
    if isinstance(cause, Mapping):
        root = (cause.get("root_cause") or [cause])[0]
        if isinstance(root, Mapping) and root.get("reason"):
            return f"{root.get('type')}: {root.get('reason')}"
    return str(error)
