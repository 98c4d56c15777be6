"""Timestamps as every stored document writes them: ISO 8601, UTC, milliseconds, a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime | None = None) -> str:
    """``moment`` (now when not given) as ``2025-01-15T10:00:00.000Z``.

    An aware moment in another zone is converted to UTC; a naive one is refused, since it
    says nothing about its zone.
    """
    if moment is None:
        moment = datetime.now(UTC)
    elif moment.tzinfo is None:
        raise ValueError(f"a naive datetime has no zone: {moment.isoformat()}")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
