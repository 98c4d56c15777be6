"""Autotags in the API: the scoring jobs run in the background (the request and response bodies
are :mod:`api.autotag_models`).

Fitting a version takes a moment and is done in the request (so bad examples are a 400 at
once); scoring every item is a job: it runs in a background thread of the API process and the
answer is 202 with the version's state, which ``GET /v1/autotags/{name}`` follows. ``wait:
true`` runs it within the request instead. A job stopped with the process resumes with
``POST /v1/autotags/{name}/score`` (or ``autotag autotags score``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio
from elasticsearch import Elasticsearch

from api.autotag_models import AutotagOut, ScoringState, VersionOut
from api.errors import ApiError
from api.settings import Settings
from autotags.registry import Autotag, AutotagError, Version

_CODES = {
    400: "invalid_autotag",
    404: "autotag_not_found",
    409: "conflict",
    503: "search_unavailable",
}


def api_error(error: AutotagError) -> ApiError:
    return ApiError(error.status, _CODES.get(error.status, "invalid_autotag"), str(error))


def version_out(version: Version) -> VersionOut:
    return VersionOut(
        version=version.version,
        training_set=version.training_set,
        created_at=version.created_at,
        positives=len(version.positives),
        negatives=len(version.negatives),
        random_negatives=version.random_negatives,
        embedding_model=version.embedding_model,
        fit=version.fit,
        scoring=ScoringState(**vars(version.scoring)),
    )


def autotag_out(autotag: Autotag) -> AutotagOut:
    return AutotagOut(
        name=autotag.name,
        description=autotag.description,
        created_at=autotag.created_at,
        versions=[version_out(v) for v in autotag.versions],
    )


class AutotagJobs:
    """One background worker per API process; one job per autotag at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def client(self) -> Elasticsearch:
        from store.connection import connect

        return connect(settings=self.settings, request_timeout=self.settings.es_bulk_timeout)

    def _run(self, job: Callable[[Elasticsearch], Any]) -> Any:
        """``job`` with a client of its own, closed when it ends."""
        client = self.client()
        try:
            return job(client)
        finally:
            client.close()

    async def call(self, job: Callable[[Elasticsearch], Any]) -> Any:
        """Run ``job`` with a client of its own in a worker thread, now; map its errors."""
        try:
            return await anyio.to_thread.run_sync(self._run, job)
        except AutotagError as error:
            raise api_error(error) from error

    def start(self, name: str, job: Callable[[Elasticsearch], Any]) -> None:
        """Run ``job`` in the background (409 while one runs for ``name``)."""
        with self._lock:
            if name in self._running and not self._running[name].done():
                raise ApiError(409, "conflict", f"a job of autotag `{name}` is running")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autotags")
            self._running[name] = self._pool.submit(self._run, job)

    def busy(self, name: str) -> bool:
        with self._lock:
            future = self._running.get(name)
            return future is not None and not future.done()

    async def settle(self, name: str, seconds: float = 2.0) -> bool:
        """Whether no job of ``name`` runs, after waiting up to ``seconds`` for one to end
        (a job that just saved its result is still closing its client)."""
        with self._lock:
            future = self._running.get(name)
        if future is None or future.done():
            return True

        def wait() -> None:
            with contextlib.suppress(Exception):
                future.result(timeout=seconds)

        await anyio.to_thread.run_sync(wait)
        return future.done()

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
