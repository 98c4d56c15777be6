"""A JSON response serialised by orjson, for routes that return plain data on the hot path.

FastAPI's own ``ORJSONResponse`` is deprecated in favour of serialising response models with
pydantic; that is right where a model is built anyway, but the search route hands back stored
documents as they come from Elasticsearch and building models for them would cost more than
the search.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.responses import Response


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            # Client text echoed back (an error's query) may hold lone UTF-16 surrogates,
            # which UTF-8 cannot encode: send U+FFFD instead, one for one so spans still fit.
            return orjson.dumps(_without_surrogates(content), option=orjson.OPT_NON_STR_KEYS)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_surrogates(v) for v in value]
    return value
