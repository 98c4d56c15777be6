"""One export from start to end: the selection read over a point in time, the writer fed item
by item, the output handed on in chunks as it grows.

The point in time is opened by :meth:`Export.start`, before any byte is produced, so a caller
that streams (the API) can still answer an unreachable cluster with an error instead of a
broken file. After that, a failure ends the stream early; the bytes sent so far do not form a
complete file (a ZIP without its directory, COCO without its closing brackets, JSONL cut at a
line), and the command line writes to a temporary name it renames only once the export is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

from elasticsearch import AsyncElasticsearch

from export.content import items_filter
from export.formats import make_writer
from export.select import PAGE_SIZE, Selection, Snapshot, select
from export.spec import ExportSpec
from search.ast import Node
from search.translate import matched_or_visible_filters, translate

# Bytes gathered before they are handed on.
CHUNK: Final = 1 << 16
DEFAULT_KEEP_ALIVE: Final = "5m"
PROGRESS_EVERY: Final = 250


def selection_for(ast: Node, spec: ExportSpec, *, page_size: int = PAGE_SIZE) -> Selection:
    """The items of ``ast`` that an export of ``spec`` may hold, and its matched predictions."""
    query = translate(ast)
    only = items_filter(spec.content, spec.training_set)
    if only is not None:
        query = {"bool": {"filter": [query, only]}}
    return Selection(query, matched_or_visible_filters(ast), spec.sampling, page_size)


class Export:
    """``await start()``, then iterate :meth:`chunks`; ``manifest`` is set once they end."""

    def __init__(
        self,
        es: AsyncElasticsearch,
        index: str,
        spec: ExportSpec,
        selection: Selection,
        *,
        keep_alive: str = DEFAULT_KEEP_ALIVE,
    ) -> None:
        self.spec = spec
        self.selection = selection
        self.snapshot = Snapshot(es, index, keep_alive)
        self.manifest: dict[str, Any] | None = None

    async def start(self) -> None:
        await self.snapshot.open()

    async def matching(self) -> int:
        """How many items the query selects before sampling (same snapshot)."""
        body = {"query": self.selection.query, "size": 0, "track_total_hits": True}
        response = await self.snapshot.search(body)
        return int(response["hits"]["total"]["value"])

    async def chunks(
        self, *, folder: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> AsyncIterator[bytes]:
        """The output's bytes, never empty (a bundle written to ``folder`` yields none);
        ``progress`` hears the items written so far, every few hundred and at the end."""
        buffer = bytearray()
        writer = make_writer(self.spec, out=None if folder else buffer.extend, folder=folder)
        seen = 0
        try:
            async for item in select(self.snapshot, self.selection):
                writer.add(item)
                seen += 1
                if progress is not None and seen % PROGRESS_EVERY == 0:
                    progress(seen)
                if len(buffer) >= CHUNK:
                    yield bytes(buffer)
                    buffer.clear()
            # Bundles copy their spooled parts (COCO's images and results, YOLO's lists) at
            # the end: handed on step by step, never gathered whole.
            for _ in writer.finishing():
                if len(buffer) >= CHUNK:
                    yield bytes(buffer)
                    buffer.clear()
            self.manifest = writer.result
            if progress is not None:
                progress(seen)
            if buffer:
                yield bytes(buffer)
        finally:
            await self.snapshot.close()
