"""The id of the request being served: taken from ``X-Request-ID`` when sane, else made here.

It lives in a context variable for the length of one request, so every log line and every
Elasticsearch call made for the request (as ``X-Opaque-Id``, see :mod:`api.es_transport`) carry
it without being handed it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

HEADER: Final = "X-Request-ID"
# Printable, header-safe, short: what proxies and tracing tools send (uuids, ULIDs, hex ids).
_SANE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

current: ContextVar[str | None] = ContextVar("autotag_request_id", default=None)


def accept(presented: str | None) -> str:
    """``presented`` when it is a sane id (1-128 of ``A-Za-z0-9._:@/+=-``), else a new one."""
    if presented is not None and _SANE.fullmatch(presented):
        return presented
    return uuid.uuid4().hex
