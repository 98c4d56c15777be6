"""Elasticsearch conversations written once, run by a sync or an async client.

An operation that needs several requests (read a document, decide, write it back only if nobody
wrote it in between) is a generator: it yields :class:`Call` values and receives each response,
or has the client's :class:`elasticsearch.ApiError` (a 404, a 409) thrown in at the ``yield``.
:func:`drive` runs it with a sync client (workers, the CLI), :func:`drive_async` with the API's
async client, so the run store's rules are written in exactly one place. Transport errors (a
node that does not answer) are not thrown in: they end the operation and reach the caller.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One client method call: ``method`` is its dotted name (``get``, ``indices.create``)."""

    method: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Op = Generator[Call, Any, T]


def _bound(client: Any, method: str) -> Any:
    target = client
    for part in method.split("."):
        target = getattr(target, part)
    return target


def drive(client: Elasticsearch, op: Op[T]) -> T:
    """Run ``op`` to its end with a sync client; its return value."""
    try:
        call = next(op)
        while True:
            try:
                response = _bound(client, call.method)(**call.kwargs)
            except ApiError as error:
                call = op.throw(error)
            else:
                call = op.send(response)
    except StopIteration as done:
        result: T = done.value
        return result


async def drive_async(client: AsyncElasticsearch, op: Op[T]) -> T:
    """Run ``op`` to its end with an async client; its return value."""
    try:
        call = next(op)
        while True:
            try:
                response = await _bound(client, call.method)(**call.kwargs)
            except ApiError as error:
                call = op.throw(error)
            else:
                call = op.send(response)
    except StopIteration as done:
        result: T = done.value
        return result
