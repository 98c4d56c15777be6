"""Tag one claimed batch with the indexer's pipeline, writing only while the lease holds.

A :class:`LeaseKeeper` thread renews the batch's lease (showing how many items it has written)
and watches the run's state. The pipeline writes through :class:`LeasedWriter`, which refuses
to write once the lease is lost, about to expire (Elasticsearch unreachable), or the run was
cancelled: a worker that lost its batch never writes after another worker took it over.

Items of the batch that the training set already tagged were tagged by an earlier attempt of
this batch (planning leaves out what was tagged before the run), so they count as tagged and
are not written again. Unreadable images, missing files and items whose URI is not a local file
are failures of the batch, listed on the run; a failing write (Elasticsearch down) is not: the
batch is given back and tried again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from elasticsearch import Elasticsearch

from indexer.model_set import LoadedModels, load_model_set
from indexer.pipeline import IndexOptions, default_workers, run_index
from indexer.report import RunSummary
from indexer.sources import Source, SourceItem, SourceProblem, check_items, resolve_uri
from indexer.taxonomy import Taxonomy, load_taxonomy
from store import runs as r
from store import schema as f
from store.model_choice import ModelSet
from store.run_claims import Claim, RunStore
from store.runs import RunState
from store.writer import ItemPredictions, PredictionWriter, WriteResult

log = logging.getLogger("autotag.worker")

# Images per model batch, as ``autotag index`` by default.
MODEL_BATCH: Final = 32
# Batches this small decode in the worker's own process (a decoding process costs a fork).
IN_PROCESS_DECODING_BELOW: Final = 2 * MODEL_BATCH


class Outcome(StrEnum):
    DONE = "done"  # recorded
    LOST = "lost"  # another worker holds the batch now
    STOPPED = "stopped"  # the run was cancelled or failed, or this worker is stopping
    RETRY = "retry"  # a write or a read failed (Elasticsearch unreachable): given back
    RUN_FAILED = "run_failed"  # the run cannot go on here (its models cannot be loaded)


class LeaseGone(RuntimeError):
    """The batch may no longer be written by this worker."""


class LeaseKeeper(threading.Thread):
    """Renews a claim's lease every ``interval`` seconds and watches its run's state."""

    def __init__(
        self,
        store: RunStore,
        claim: Claim,
        *,
        interval: float,
        stopping: threading.Event,
    ) -> None:
        super().__init__(name=f"lease-{claim.batch_id}", daemon=True)
        self.store = store
        self.claim = claim
        self.interval = interval
        self.stopping = stopping
        lease_s = store.lease_ms / 1000
        # Writing stops a quarter of a lease before the lease itself would expire.
        self.margin = lease_s / 4
        self.valid_until = time.monotonic() + lease_s - self.margin
        self.lost = False
        self.stop_reason: str | None = None
        self.progress = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                renewed_at = time.monotonic()
                if not self.store.renew(self.claim, self.progress):
                    self.lost = True
                    return
                self.valid_until = renewed_at + self.store.lease_ms / 1000 - self.margin
                state = self.store.run_state(self.claim.run_id)
                if state is not RunState.RUNNING:
                    self.stop_reason = f"the run is {state.value if state else 'gone'}"
                    return
            except Exception as error:  # Elasticsearch unreachable: the lease runs out
                log.warning("renewing the lease of %s failed: %s", self.claim.batch_id, error)

    def halt(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()

    def why_not_writable(self) -> str | None:
        if self.lost:
            return "the lease was taken over"
        if self.stop_reason:
            return self.stop_reason
        if self.stopping.is_set():
            return "the worker is stopping"
        if time.monotonic() >= self.valid_until:
            return "the lease could not be renewed"
        return None


class LeasedWriter:
    """The item writer, refusing to write unless the lease holds; remembers a failed write."""

    def __init__(self, inner: PredictionWriter, lease: LeaseKeeper) -> None:
        self.inner = inner
        self.lease = lease
        self.training_set = inner.training_set
        self.force = inner.force
        self.broken: str | None = None

    def _check(self) -> None:
        why = self.lease.why_not_writable()
        if why is not None:
            self.broken = why
            raise LeaseGone(why)

    def already_tagged(self, item_ids: Sequence[str]) -> set[str]:
        self._check()
        return self.inner.already_tagged(item_ids)

    def write(self, batch: Sequence[ItemPredictions]) -> WriteResult:
        self._check()
        try:
            result = self.inner.write(batch)
        except Exception as error:
            self.broken = f"write failed: {type(error).__name__}: {error}"
            raise
        self.lease.progress += result.written + result.skipped + len(result.failed)
        return result


class ModelCache:
    """The last few model sets this worker loaded (loading a large model takes seconds)."""

    def __init__(self, device: str, cache_dir: Path | None, *, keep: int = 2) -> None:
        self.device = device
        self.cache_dir = cache_dir
        self.keep = keep
        self._loaded: OrderedDict[str, LoadedModels] = OrderedDict()
        self._taxonomy: Taxonomy | None = None

    def has(self, models: ModelSet) -> bool:
        return json.dumps(models.to_doc(), sort_keys=True) in self._loaded

    def get(self, models: ModelSet) -> LoadedModels:
        key = json.dumps(models.to_doc(), sort_keys=True)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        if self._taxonomy is None:
            self._taxonomy = load_taxonomy(None)
        started = time.perf_counter()
        loaded = load_model_set(
            models, self._taxonomy, device=self.device, cache_dir=self.cache_dir
        )
        log.info("loaded models %s in %.1f s", models.name, time.perf_counter() - started)
        self._loaded[key] = loaded
        while len(self._loaded) > self.keep:
            self._loaded.popitem(last=False)
        return loaded


@dataclass(frozen=True)
class BatchReport:
    outcome: Outcome
    summary: RunSummary | None = None
    reason: str | None = None


def read_items(client: Elasticsearch, index: str, item_ids: Sequence[str]) -> Source:
    """The batch's items as a source to tag: local files, and the problems of the others."""
    docs = client.mget(index=index, ids=list(item_ids), source_includes=[f.ITEM_ID, f.URI])
    items: list[SourceItem] = []
    problems: list[SourceProblem] = []
    for doc in docs["docs"]:
        item_id = str(doc["_id"])
        if not doc.get("found"):
            problems.append(SourceProblem("the item no longer exists", item_id))
            continue
        uri = doc["_source"].get(f.URI)
        if not isinstance(uri, str) or not uri:
            problems.append(SourceProblem("the item has no uri", item_id))
            continue
        items.append(SourceItem(item_id, uri, resolve_uri(uri, Path("/"))))
    return check_items(items, problems)


def execute(
    store: RunStore,
    claim: Claim,
    models: ModelCache,
    *,
    stopping: threading.Event,
    device: str,
    write_batch: int = 64,
) -> BatchReport:
    """Tag ``claim``'s items and record the batch (see the module docstring)."""
    run = claim.run
    client = store.client
    items_index = str(run[r.ITEMS_INDEX])
    model_set = ModelSet.from_doc(run[r.MODEL_SET])
    try:
        loaded = models.get(model_set)
    except Exception as error:
        reason = f"models {model_set.name!r} could not be loaded: {type(error).__name__}: {error}"
        store.release(claim)
        store.fail_run(claim.run_id, reason)
        return BatchReport(Outcome.RUN_FAILED, reason=reason)
    lease = LeaseKeeper(store, claim, interval=min(2.0, store.lease_ms / 3000), stopping=stopping)
    lease.start()
    writer = LeasedWriter(
        PredictionWriter(
            client,
            items_index,
            training_set=str(run[r.TRAINING_SET]),
            batch_size=write_batch,
            expect_new=False,
        ),
        lease,
    )
    summary: RunSummary | None = None
    try:
        source = read_items(client, items_index, claim.item_ids)
        options = IndexOptions(
            # Never more images per model batch than per write: writes (and with them the
            # lease checks and the progress shown) come every ``write_batch`` items.
            batch_size=min(MODEL_BATCH, write_batch),
            workers=(
                default_workers(device) if len(source.items) >= IN_PROCESS_DECODING_BELOW else 0
            ),
            device=device,
            write_batch_size=write_batch,
            progress=False,
        )
        summary = run_index(
            source, writer, clip=loaded.clip, detector=loaded.detector, options=options
        )
    except Exception as error:  # a read of the items or of "already tagged" failed
        writer.broken = writer.broken or f"{type(error).__name__}: {error}"
    finally:
        lease.halt()
    if lease.lost:
        return BatchReport(Outcome.LOST, summary, "the lease was taken over")
    if writer.broken or summary is None or summary.aborted:
        reason = writer.broken or (summary.aborted if summary else None) or "unknown"
        store.release(claim)
        stopped = lease.stop_reason or stopping.is_set()
        return BatchReport(Outcome.STOPPED if stopped else Outcome.RETRY, summary, reason)
    failures = [asdict(failure) for failure in summary.failures]
    recorded = store.finish(
        claim,
        tagged=summary.tagged + summary.skipped,
        failures=failures,
        predictions=summary.predictions,
    )
    if not recorded:
        return BatchReport(Outcome.LOST, summary, "another worker took the batch over")
    store.finish_if_complete(claim.run_id)
    return BatchReport(Outcome.DONE, summary)
