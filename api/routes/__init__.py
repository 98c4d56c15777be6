"""HTTP routes, one module per resource; each exposes ``router`` (search builds its per app)."""

from __future__ import annotations

from typing import Any

from api.models import ErrorEnvelope

_MEANING = {
    400: "Invalid query, cursor or body",
    401: "Missing or unknown API key",
    403: "The API key may not do this",
    404: "No such item, prediction, slice, run or dataset setting",
    409: "Concurrent change (re-read and retry), a slice in use or a run already finished",
    410: "The cursor's point in time expired",
    422: "Invalid request body or parameters",
    503: "Elasticsearch unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route may answer, all with the envelope."""
    return {
        code: {"model": ErrorEnvelope, "description": _MEANING[code]}
        for code in sorted({*codes, 400, 422, 503})
    }
