"""Reading a whole selection from a snapshot: a point in time paged with ``search_after``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from elasticsearch import ApiError, Elasticsearch

PIT_KEEP_ALIVE: Final = "5m"


def snapshot_pages(
    client: Elasticsearch,
    index: str,
    *,
    size: int,
    source: Mapping[str, Any] | list[str] | bool,
    query: Mapping[str, Any] | None = None,
    sort: Sequence[str | Mapping[str, Any]] = ("_shard_doc",),
    sequence_numbers: bool = False,
) -> Iterator[list[dict[str, Any]]]:
    """Hits of ``query`` (every document without one), ``size`` at a time, in ``sort`` order
    (index order unless given), from one point in time; ``source`` is the request's
    ``_source``; with ``sequence_numbers`` each hit has the ``_seq_no`` and ``_primary_term``
    it had at that point in time, which a write guarded by them needs (a document changed since
    then fails that write with 409). The point in time is closed when the pages end or the
    caller stops (a close that fails leaves it to expire by itself)."""
    pit = client.open_point_in_time(index=index, keep_alive=PIT_KEEP_ALIVE)["id"]
    after: list[Any] | None = None
    try:
        while True:
            body: dict[str, Any] = {
                "size": size,
                "sort": list(sort),
                "pit": {"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                "_source": source if isinstance(source, list | bool) else dict(source),
                "track_total_hits": False,
            }
            if query is not None:
                body["query"] = query
            if sequence_numbers:
                body["seq_no_primary_term"] = True
            if after is not None:
                body["search_after"] = after
            response = client.search(body=body)
            pit = response.get("pit_id", pit)
            hits: list[dict[str, Any]] = response["hits"]["hits"]
            if not hits:
                return
            yield hits
            after = hits[-1]["sort"]
    finally:
        with contextlib.suppress(ApiError):
            client.close_point_in_time(id=pit)
