"""A review-by-query run in a process of its own, for the test that kills it half way.

``python bulk_review_process.py QUERY RUN_ID PAGE_SIZE``: accepts what QUERY matched in
``AUTOTAG_INDEX`` at ``AUTOTAG_ES_URL``, printing ``bulk`` after each bulk request is answered
so the test knows when to kill it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from elasticsearch import AsyncElasticsearch

from api import bulk_review
from api.models import ReviewAction
from api.query import parse_query
from api.settings import Settings


async def main(query: str, run_id: str, page_size: int) -> None:
    settings = Settings()
    parsed = parse_query(query, settings.query_max_length)
    async with AsyncElasticsearch(settings.es_url or "") as es:
        bulk = es.bulk

        async def bulk_and_say(**kwargs: Any) -> Any:
            answer = await bulk(**kwargs)
            print("bulk", flush=True)
            return answer

        es.bulk = bulk_and_say  # type: ignore[method-assign]
        await bulk_review.apply(
            es,
            settings.index,
            parsed.query,
            parsed.hits_query,
            action=ReviewAction.ACCEPT,
            who="killed",
            api_key="killed",
            run_id=run_id,
            page_size=page_size,
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
