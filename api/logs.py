"""Structured logs: one JSON object per line, each with the request id, secrets scrubbed.

``autotag serve`` configures logging with :func:`log_config` (uvicorn's own lines included).
Every line is a JSON object with ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``request_id`` (when logged while serving a request), the record's structured ``fields`` and,
for errors, ``traceback``. The access line (logger ``autotag.access``, one per request) is
written by :mod:`api.middleware`.

Secrets never reach the output: every formatted line has the values of the configured secrets
(:func:`register_secrets`: API keys, the cluster's password and API key) replaced, and
credentials in URLs, ``Authorization`` values and API-key headers masked, whoever logged them.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from api import request_id

ACCESS_LOGGER: Final = "autotag.access"
MASK: Final = "***"

access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("autotag.api")

_PATTERNS: Final = (
    # a header or parameter named like a credential, as `name: value`, `name=value` or JSON;
    # an `Authorization` value's scheme goes with it
    (
        re.compile(
            r"(?i)((?:authorization|x-api-key|api[_-]?key|password|secret)[\"']?\s*[:=]\s*[\"']?)"
            r"(?:(?:basic|bearer|apikey)\s+)?(?!\*\*\*)[^\s\"',;}&]+"
        ),
        rf"\g<1>{MASK}",
    ),
    # a token after its scheme, wherever it is: Basic/Bearer/ApiKey <token>
    (re.compile(r"(?i)\b(basic|bearer|apikey)(\s+)(?!\*\*\*)[A-Za-z0-9+/=._~-]+"), rf"\1\2{MASK}"),
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), rf"\g<1>{MASK}@"),
)

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(*values: str | None) -> None:
    """Values that must never be printed (empty and very short values are ignored: masking
    every ``a`` in the logs would hide nothing and garble everything)."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


def scrub(text: str) -> str:
    """``text`` with configured secrets and credential-shaped values masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.current.get()
        if rid is not None:
            line["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return scrub(orjson.dumps(line, default=str).decode())


def log_config(level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` (and uvicorn ``log_config``) for JSON lines on
    stderr: ours at ``level``, uvicorn's server lines at ``level``, the client's at warning."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "autotag": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            # The request line is ours (autotag.access), with the id; uvicorn's is off.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "elastic_transport": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def log_started(nodes: list[str], index: str) -> None:
    """The line that says where this process serves from (node URLs scrubbed like any)."""
    log.info("serving", extra={"fields": {"elasticsearch": nodes, "index": index}})


def log_older_schema(index: str, version: int, current: int) -> None:
    """The warning for an index an older autotag made: some queries need what it lacks."""
    log.warning(
        "older schema: run `autotag migrate` (counts read fields this index's items lack)",
        extra={"fields": {"index": index, "schema_version": version, "needed": current}},
    )
