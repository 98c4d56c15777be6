"""Reading a slice for an evaluation: every item under one point in time, page by page, in
this process or split among worker processes.

The judging is Python work on every item (decoding its ``_source``, matching boxes), so one
process uses one core while Elasticsearch reads on another. :func:`accumulate_in_workers`
splits the point in time into as many slices as workers (Elasticsearch's ``slice`` with a
point in time: disjoint, together every item), each worker process streams and judges its
slice with its own client, and their accumulators merge. The figures are the same as one
process's: the same detections land in the same curves (only the bootstrap's grouping of
items, by arrival, differs).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import AsyncElasticsearch

from evaluation.judging import Accumulator, fields_read, judge_against_truth, judge_reviews

PAGE: Final = 2000
KEEP_ALIVE: Final = "2m"

Connect = Callable[[], AsyncElasticsearch]
"""Makes a client in a worker process; picklable (a module-level function or a partial)."""


class EvaluationError(Exception):
    """An evaluation that cannot run as asked (e.g. an unknown truth source)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # raised in a worker process, it crosses back whole
        return (EvaluationError, (self.code, self.message, self.details))


def check_shards(response: Mapping[str, Any]) -> None:
    """Refuse a partial answer: an evaluation over part of the shards would mislead."""
    shards = response.get("_shards") or {}
    if shards.get("failed"):
        raise EvaluationError(
            "search_unavailable", "Some shards failed; the evaluation would be partial: retry"
        )


async def stream(
    es: AsyncElasticsearch,
    index: str,
    query: Mapping[str, Any],
    fields: list[str],
    *,
    page: int = PAGE,
    keep_alive: str = KEEP_ALIVE,
    pit_id: str | None = None,
    part: tuple[int, int] | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The ``_source`` of every item matching ``query``, page by page, under one point in time
    (a consistent view), the next page requested while the caller works on this one.

    Without ``pit_id`` the stream opens and closes its own point in time on ``index``; with
    it, the caller's. ``part`` ``(i, n)`` reads only the ``i``-th of ``n`` slices of it.
    """
    own = pit_id is None
    if pit_id is None:
        pit = await es.open_point_in_time(index=index, keep_alive=keep_alive)
        pit_id = str(pit["id"])
    current = pit_id

    async def fetch(after: list[Any] | None) -> Mapping[str, Any]:
        body: dict[str, Any] = {
            "query": query,
            "size": page,
            "sort": [{"_shard_doc": "asc"}],
            "pit": {"id": current, "keep_alive": keep_alive},
            "_source": fields,
            "track_total_hits": False,
        }
        if part is not None and part[1] > 1:
            body["slice"] = {"id": part[0], "max": part[1]}
        if after is not None:
            body["search_after"] = after
        response: Mapping[str, Any] = (await es.search(body=body)).body
        check_shards(response)
        return response

    pending = asyncio.ensure_future(fetch(None))
    try:
        while True:
            response = await pending
            current = str(response.get("pit_id", current))
            hits = response["hits"]["hits"]
            if not hits:
                break
            if len(hits) == page:
                pending = asyncio.ensure_future(fetch(hits[-1]["sort"]))
            yield [hit["_source"] for hit in hits]
            if len(hits) < page:
                break
    finally:
        if not pending.done():
            pending.cancel()
        if own:
            await es.close_point_in_time(id=current)


@dataclass(frozen=True)
class Judging:
    """What to read and how to judge it: all a worker process needs besides a client."""

    index: str
    query: Mapping[str, Any]
    """The items to read (the slice, already narrowed to the ones worth reading)."""
    sets: Sequence[str]
    truth: str | None
    """An imported truth source, or ``None`` to judge by the review decisions."""
    budget: int | None = None
    keep_alive: str = KEEP_ALIVE


async def accumulate(
    es: AsyncElasticsearch,
    judging: Judging,
    *,
    pit_id: str | None = None,
    part: tuple[int, int] | None = None,
) -> Accumulator:
    """Every item of the slice (or of one part of a point in time), judged and added up."""
    sets, truth = list(judging.sets), judging.truth
    accumulator = Accumulator(sets, budget=judging.budget, per_set=truth is not None)
    async for page in stream(
        es,
        judging.index,
        judging.query,
        fields_read(truth is not None),
        keep_alive=judging.keep_alive,
        pit_id=pit_id,
        part=part,
    ):

        def work(page: list[dict[str, Any]] = page) -> None:
            for doc in page:
                if truth is None:
                    accumulator.add(judge_reviews(doc, sets))
                else:
                    accumulator.add(judge_against_truth(doc, sets, truth))

        await asyncio.to_thread(work)
    return accumulator


def _accumulate_part(
    connect: Connect, judging: Judging, pit_id: str, part: tuple[int, int]
) -> Accumulator:
    """A worker process's whole job: its slice of the point in time, with its own client."""

    async def run() -> Accumulator:
        es = connect()
        try:
            return await accumulate(es, judging, pit_id=pit_id, part=part)
        finally:
            await es.close()

    return asyncio.run(run())


async def accumulate_in_workers(
    es: AsyncElasticsearch, connect: Connect, judging: Judging, workers: int
) -> Accumulator:
    """:func:`accumulate` split among ``workers`` processes, one slice of one point in time
    each (started fresh, ``spawn``: safe inside a threaded server), merged in slice order."""
    pit = await es.open_point_in_time(index=judging.index, keep_alive=judging.keep_alive)
    pit_id = str(pit["id"])
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _accumulate_part, connect, judging, pit_id, (i, workers))
                for i in range(workers)
            )
        )
    except BaseException:
        # never wait here: a cancelled request must not hold the event loop
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        await asyncio.to_thread(pool.shutdown)  # done: reap the processes, off the loop
    finally:
        await es.close_point_in_time(id=pit_id)
    total = parts[0]
    for other in parts[1:]:
        total.merge(other)
    return total
