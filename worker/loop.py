"""The worker loop: claim a batch, else plan a queued run, else tidy up and wait.

A worker holds no state that matters beyond the batch it is tagging: everything it decides is
a conditional write to the runs index (:mod:`store.run_claims`), so workers can be started and
killed (``kill -9`` included) at any time, on any number of machines. When Elasticsearch does
not answer, the worker backs off (0.5 s doubling to 8 s) and goes on where the runs index says.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import elastic_transport
from elasticsearch import ApiError, Elasticsearch

from indexer.pipeline import resolve_device
from store import runs as r
from store.connection import connect
from store.model_choice import ModelSet
from store.run_claims import RunStore
from worker.batch import ModelCache, Outcome, execute
from worker.settings import WorkerSettings

log = logging.getLogger("autotag.worker")

MAX_BACKOFF_S = 8.0
# How often an idle worker looks for runs whose last batch finished without the run.
TIDY_EVERY_S = 5.0


@dataclass
class WorkerStats:
    """What this worker did since it started."""

    batches: int = 0
    items: int = 0
    retries: int = 0
    backoffs: int = 0
    runs_planned: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Worker:
    """One worker process's loop (``autotag worker``)."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        client: Elasticsearch | None = None,
        name: str | None = None,
        models: ModelCache | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or connect(settings=settings, request_timeout=settings.es_bulk_timeout)
        self.store = RunStore(
            self.client,
            settings.runs_index,
            lease_ms=int(settings.run_lease_s * 1000),
            batch_size=settings.run_batch_size,
        )
        if name:
            self.store.owner = name
        self.device = resolve_device(settings.worker_device)
        # Tests share one cache between workers: loading models is the slow part of a start.
        self.models = models or ModelCache(self.device, settings.cache_dir())
        self.stopping = threading.Event()
        self.stats = WorkerStats()
        self._next_tidy = 0.0

    @property
    def name(self) -> str:
        return self.store.owner

    def stop(self) -> None:
        """Stop soon: the batch in hand is given back at its next write."""
        self.stopping.set()

    def step(self) -> bool:
        """Do one thing; False when there was nothing to do."""
        claim = self.store.claim()
        if claim is not None:
            model_set = ModelSet.from_doc(claim.run[r.MODEL_SET])
            if not self.models.has(model_set):
                # Load first, holding no batch: a slow load must not delay the batch, nor
                # count in the run's rate.
                self.store.release(claim)
                try:
                    self.models.get(model_set)
                except Exception as error:
                    self.store.fail_run(
                        claim.run_id,
                        f"models {model_set.name!r} could not be loaded: "
                        f"{type(error).__name__}: {error}",
                    )
                return True
            started = time.perf_counter()
            report = execute(
                self.store,
                claim,
                self.models,
                stopping=self.stopping,
                device=self.device,
                write_batch=self.settings.worker_write_batch,
            )
            self.stats.outcomes[report.outcome] = self.stats.outcomes.get(report.outcome, 0) + 1
            seconds = time.perf_counter() - started
            if report.outcome is Outcome.DONE and report.summary is not None:
                summary = report.summary
                done = summary.tagged + summary.skipped
                self.stats.batches += 1
                self.stats.items += done + summary.failed
                log.info(
                    "%s: %s: %d tagged, %d failed in %.1f s (%.1f items/s)",
                    self.name,
                    claim.batch_id,
                    done,
                    summary.failed,
                    seconds,
                    (done + summary.failed) / seconds if seconds else 0.0,
                )
            else:
                log.warning(
                    "%s: %s %s: %s", self.name, claim.batch_id, report.outcome, report.reason
                )
                if report.outcome is Outcome.RETRY:
                    self.stats.retries += 1
                    self.stopping.wait(1.0)
            return True
        planned = self.store.plan_next()
        if planned is not None:
            self.stats.runs_planned += 1
            return True
        if time.monotonic() >= self._next_tidy:  # finish runs whose finisher died
            self.store.finish_complete_runs()
            self._next_tidy = time.monotonic() + TIDY_EVERY_S
        return False

    def run(self, *, exit_when_idle: bool = False) -> WorkerStats:
        """Work until :meth:`stop` (or, with ``exit_when_idle``, until no run is left)."""
        backoff = 0.0
        log.info("%s: started (device %s)", self.name, self.device)
        while not self.stopping.is_set():
            try:
                worked = self.step()
                if not worked and exit_when_idle and not self.store.has_unfinished_runs():
                    break
            except (elastic_transport.TransportError, ApiError) as error:
                if isinstance(error, ApiError) and error.status_code not in (429, 500, 502, 503):
                    log.exception("%s: unexpected answer from Elasticsearch", self.name)
                backoff = min(MAX_BACKOFF_S, max(0.5, backoff * 2))
                self.stats.backoffs += 1
                log.warning(
                    "%s: Elasticsearch unavailable (%s); retrying in %.1f s",
                    self.name,
                    type(error).__name__,
                    backoff,
                )
                self.stopping.wait(backoff)
                continue
            backoff = 0.0
            if not worked:
                self.stopping.wait(self.settings.worker_poll_s)
        log.info("%s: stopped", self.name)
        return self.stats
