"""A JSON response serialised by orjson, for routes that return plain data on the hot path.

FastAPI's own ``ORJSONResponse`` is deprecated in favour of serialising response models with
pydantic; that is right where a model is built anyway, but the search route hands back stored
documents as they come from Elasticsearch and building models for them would cost more than
the search.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
