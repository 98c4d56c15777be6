"""Run an export against a real node from synchronous tests."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from elasticsearch import AsyncElasticsearch

from export.run import Export, selection_for
from export.spec import ExportFormat, ExportSpec, Sampling
from search import parse, render
from store.connection import serializers


def export_items(
    es_url: str,
    index: str,
    query: str,
    *,
    sampling: Sampling | None = None,
    page_size: int = 7,
    **spec: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The JSONL records an export writes, and its manifest (small pages: paging is tested)."""
    ast = parse(query)
    full = ExportSpec(render(ast), ExportFormat.JSONL, sampling=sampling, **spec)

    async def run() -> tuple[bytes, dict[str, Any]]:
        es = AsyncElasticsearch(es_url, serializers=serializers())
        try:
            job = Export(es, index, full, selection_for(ast, full, page_size=page_size))
            await job.start()
            out = io.BytesIO()
            async for chunk in job.chunks():
                out.write(chunk)
            assert job.manifest is not None
            return out.getvalue(), job.manifest
        finally:
            await es.close()

    data, manifest = asyncio.run(run())
    return [json.loads(line) for line in data.splitlines()], manifest
