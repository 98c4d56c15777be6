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
    413: "The image is too large to serve",
    415: "The item's file is not a raster image",
    422: "Invalid request body or parameters",
    500: "Unexpected server error (a bug, logged with the request id); never a trace",
    503: "Elasticsearch unavailable",
}
# What any route may answer: a request it cannot read (400, 422), a bug (500), the cluster
# away (503).
ALWAYS = (400, 422, 500, 503)


def error_responses(*codes: int, always: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route may answer, all with the envelope:
    ``codes``, and those of :data:`ALWAYS` unless ``always=False`` (a route that reads no
    input and needs no cluster can still fail with a bug: 500)."""
    chosen = {*codes, *ALWAYS} if always else {*codes, 500}
    return {
        code: {"model": ErrorEnvelope, "description": _MEANING[code]} for code in sorted(chosen)
    }
