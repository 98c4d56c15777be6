"""The one error envelope, and the single place where exceptions become HTTP responses.

Every error the API returns looks like::

    {"error": {"code": "invalid_query", "message": "...", "details": {...}}}

Query errors are 400 with the span and the caret rendering; unknown items and predictions 404;
lost review races 409; invalid bodies 422; missing or wrong keys 401/403; an unreachable or
failing cluster 503. Nothing a client sends produces a 500: a bug still answers with the
envelope, and is logged with its traceback on the server only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import elastic_transport
import elasticsearch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.responses import OrjsonResponse
from search import QueryError

log = logging.getLogger("autotag.api")

_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "search_unavailable",
}


class ApiError(Exception):
    """An error with its status, stable code and details; raised by routes and services."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


def envelope(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> OrjsonResponse:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return OrjsonResponse(body, status_code=status, headers=dict(headers or {}))


def query_error_details(error: QueryError) -> dict[str, Any]:
    return {
        "reason": error.code,
        "query": error.query,
        "start": error.start,
        "end": error.end,
        "hint": error.hint,
        "rendered": error.render(),
    }


def _jsonable(value: Any) -> Any:
    """Validation error fragments as plain JSON (inputs may be bytes, contexts exceptions)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_jsonable(v) for v in value]
    return str(value)


def _validation_details(errors: Sequence[Any]) -> dict[str, Any]:
    cleaned = []
    for err in errors:
        entry = {"loc": _jsonable(err.get("loc", ())), "msg": str(err.get("msg", ""))}
        if "type" in err:
            entry["type"] = str(err["type"])
        cleaned.append(entry)
    return {"errors": cleaned}


def elasticsearch_error(exc: Exception) -> ApiError:
    """What a failed Elasticsearch call means to the client."""
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status
        reason = _es_reason(exc)
        if status == 400:
            # The translator only emits valid DSL; a 400 here is a limit the cluster enforces
            # (clause count, buckets...), so the client may simplify the request.
            return ApiError(400, "search_rejected", "Elasticsearch rejected the request", reason)
        if status == 409:
            return ApiError(409, "conflict", "The item changed concurrently", reason)
        if status == 429:
            return ApiError(
                503,
                "search_unavailable",
                "Elasticsearch is overloaded",
                reason,
                headers={"Retry-After": "1"},
            )
        return ApiError(503, "search_unavailable", "Elasticsearch failed the request", reason)
    return ApiError(
        503, "search_unavailable", "Elasticsearch is unreachable", headers={"Retry-After": "1"}
    )


def whole_answer(response: Any) -> Any:
    """``response`` if every shard answered; otherwise a 503 to retry.

    Elasticsearch answers a search or count that some shards failed (a node just lost) with a
    200 and ``_shards.failed``: hits and counts from the shards that did answer. Served as is,
    that is a wrong result, not a degraded one.
    """
    shards = response.get("_shards") or {}
    if shards.get("failed"):
        raise ApiError(
            503,
            "search_unavailable",
            "Some shards did not answer; the result would be incomplete",
            {"shards_failed": int(shards["failed"]), "shards_total": int(shards.get("total", 0))},
            headers={"Retry-After": "1"},
        )
    return response


_INT64: Final = 2**63


def refuse_unstorable(value: Any, loc: tuple[str | int, ...] = ("body",)) -> None:
    """A 400 naming where ``value`` (a request body, as data) holds an integer beyond 64 bits.

    JSON allows any integer and JSON Schema cannot bound those of free-form metadata, but no
    document can hold one: it is refused up front, with its place, before anything is written.
    (Lone UTF-16 surrogates, the other thing no document can hold, never get this far: the
    body's JSON parser refuses them.)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_INT64 <= value < _INT64:
            raise ApiError(
                400,
                "invalid_value",
                "Cannot be stored: integers must fit in 64 bits",
                {"loc": list(loc)},
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refuse_unstorable(item, (*loc, str(key)))
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            refuse_unstorable(item, (*loc, position))


def _es_reason(exc: elasticsearch.ApiError) -> dict[str, Any]:
    """The error type and reason ES reports; never headers, URLs or credentials."""
    body = exc.body if isinstance(exc.body, Mapping) else {}
    error = body.get("error")
    details: dict[str, Any] = {"es_status": exc.meta.status}
    if isinstance(error, Mapping):
        root = (error.get("root_cause") or [error])[0]
        if isinstance(root, Mapping):
            details["es_type"] = str(root.get("type", ""))
            details["es_reason"] = str(root.get("reason", ""))[:500]
    return details


async def _api_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _query_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, QueryError)
    return envelope(400, "invalid_query", exc.message, query_error_details(exc))


async def _validation_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, RequestValidationError)
    return envelope(
        422, "validation_error", "The request is not valid", _validation_details(exc.errors())
    )


async def _http_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "server_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return envelope(exc.status_code, code, message, headers=exc.headers)


async def _es_error(_: Request, exc: Exception) -> OrjsonResponse:
    error = elasticsearch_error(exc)
    log.warning("elasticsearch error: %s %s", error.code, error.details)
    return envelope(error.status, error.code, error.message, error.details, error.headers)


async def _unexpected(_: Request, exc: Exception) -> OrjsonResponse:
    log.exception("unhandled error", exc_info=exc)
    return envelope(500, "internal_error", "An unexpected error occurred")


def install(app: FastAPI) -> None:
    """Route every exception through the envelope."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(QueryError, _query_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(elasticsearch.ApiError, _es_error)
    app.add_exception_handler(elastic_transport.TransportError, _es_error)
    app.add_exception_handler(Exception, _unexpected)
