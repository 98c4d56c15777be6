"""The autotag Python client: :class:`Client` (sync) and :class:`AsyncClient` (asyncio), typed
with the API's own pydantic models (``api.models``), with every search page followed over its
cursor, query errors that render the caret like ``search.QueryError``, and 503s with
``Retry-After`` retried (tenacity). See docs/client.md.

>>> with Client("http://127.0.0.1:8000") as autotag:  # doctest: +SKIP
...     autotag.count("object_prefix:car AND score < 0.5").count
"""

from client.aio import AsyncClient
from client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    CursorExpired,
    Forbidden,
    InvalidRequest,
    NotFound,
    QueryError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from client.settings import ClientSettings
from client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientSettings",
    "Conflict",
    "CursorExpired",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "QueryError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
]
