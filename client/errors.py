"""What an error answer of the API becomes in Python: one exception per status, read from the
API's one error envelope (``api.models.ErrorEnvelope``).

A query error (400 ``invalid_query``) is a :class:`search.QueryError` as well, built from the
span and hint the envelope carries, so it renders the same caret as a local ``parse``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from pydantic import ValidationError

import search
from api.models import ErrorEnvelope


class ApiError(Exception):
    """An error answer: its HTTP status, the envelope's stable ``code``, message and details."""

    status: ClassVar[int | None] = None

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.http_status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.retry_after = retry_after
        self.attempts = 1

    def __str__(self) -> str:
        return f"{self.http_status} {self.code}: {self.message}"


class BadRequest(ApiError):
    """400: a bad cursor, or a request Elasticsearch refused (``search_rejected``)."""

    status = 400


class QueryError(BadRequest, search.QueryError):
    """400 ``invalid_query``: ``render()`` is the query with a caret under the mistake, and
    ``code`` the language's own (``unknown_field``...), exactly as ``search.parse`` raises it."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        ApiError.__init__(self, 400, "invalid_query", message, details)
        search.QueryError.__init__(
            self,
            message,
            int(details.get("start", 0)),
            int(details.get("end", 0)),
            hint=details.get("hint"),
            query=str(details.get("query", "")),
        )
        # The language's own error code, as on the local error: ``unknown_field``...
        self.code = str(details.get("reason", search.QueryError.code))

    def __str__(self) -> str:
        return self.render()


class Unauthorized(ApiError):
    """401: no key, or one the API does not know (``AUTOTAG_API_KEY``)."""

    status = 401


class Forbidden(ApiError):
    """403: the key may read but not review."""

    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    """409: the item changed concurrently (``details`` may carry it as it is now)."""

    status = 409


class CursorExpired(ApiError):
    """410: a consistent search's point in time expired; search again."""

    status = 410


class InvalidRequest(ApiError):
    """422: the body or parameters are not valid (``details["errors"]`` says where)."""

    status = 422


class Unavailable(ApiError):
    """503: Elasticsearch is unreachable or overloaded. Retried while it says ``Retry-After``;
    raised once the retries are spent (``attempts`` says how many were made)."""

    status = 503


class TooManyRequests(ApiError):
    status = 429


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        CursorExpired,
        InvalidRequest,
        TooManyRequests,
        Unavailable,
    )
    if cls.status is not None
}


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number, or an HTTP date), if any."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an error answer (any status >= 400)."""
    status = response.status_code
    wait = retry_after(response.headers.get("retry-after"))
    try:
        body = ErrorEnvelope.model_validate_json(response.content).error
    except ValidationError:
        # Not the API's envelope: a proxy in between, or something else on that port.
        message = response.text[:500] or response.reason_phrase
        return _BY_STATUS.get(status, ApiError)(status, "http_error", message, retry_after=wait)
    if status == 400 and body.code == "invalid_query":
        return QueryError(body.message, body.details)
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, body.code, body.message, body.details, retry_after=wait)
