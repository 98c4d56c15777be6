"""The ``embed`` job: image embeddings for items indexed without one, predictions untouched.

Items written before embeddings existed (or with ``--no-embeddings``) get their CLIP image
embedding computed from their ``uri`` and written alone, as a partial update
(:func:`store.embeddings.write_embeddings`): predictions, review states and history are never
read or rewritten, so the job runs safely next to reviews and indexing runs. It lists only
items still lacking an embedding, so a killed run resumes where it stopped and a second run
finds nothing to do. Items without a local image (imported predictions, ``s3://`` URIs) are
reported, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from torch.utils.data import DataLoader

from embeddings.clip import ClipEncoder
from indexer.decoding import DEFAULT_MAX_PIXELS, Batch, ImageDataset, collate, worker_init
from indexer.report import Failure, FailureLog
from indexer.sources import resolve_uri
from store import schema as f
from store.embeddings import record_embedding_model, write_embeddings
from store.snapshot import snapshot_pages


@dataclass
class BackfillSummary:
    """``lacking == embedded + failed + no_image + gone``."""

    lacking: int = 0
    embedded: int = 0
    no_image: int = 0
    gone: int = 0  # deleted while the job ran
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def table(self, title: str) -> Table:
        table = Table(title=title, show_header=False)
        rows = (
            ("items lacking an embedding", self.lacking),
            ("embedded", self.embedded),
            ("no local image", self.no_image),
            ("failed", self.failed),
            ("deleted meanwhile", self.gone),
            ("time", f"{self.seconds:.1f} s"),
        )
        for name, value in rows:
            table.add_row(name, str(value))
        return table


def lacking_query(query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Items without an embedding (and matching ``query``, a translated filter, if given)."""
    body: dict[str, Any] = {"must_not": [{"exists": {"field": f.EMBEDDING}}]}
    if query is not None:
        body["filter"] = [query]
    return {"bool": body}


def items_lacking(
    client: Elasticsearch, index: str, query: Mapping[str, Any], batch: int
) -> Iterator[list[tuple[str, str | None]]]:
    """(item id, uri) of the items ``query`` selects, ``batch`` at a time, from a snapshot."""
    for hits in snapshot_pages(client, index, size=batch, source=[f.URI], query=query):
        yield [(str(hit["_id"]), hit["_source"].get(f.URI)) for hit in hits]


def run_backfill(
    client: Elasticsearch,
    index: str,
    encoder: ClipEncoder,
    *,
    query: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    list_batch: int = 256,
    workers: int = 0,
    progress: bool = True,
    console: Console | None = None,
    failure_log: FailureLog | None = None,
    uri_base: Path | None = None,
) -> BackfillSummary:
    """Embed every item of ``index`` that lacks an embedding (see the module docstring)."""
    started = time.perf_counter()
    record_embedding_model(client, index, encoder.identity())
    selected = lacking_query(query)
    summary = BackfillSummary(lacking=int(client.count(index=index, query=selected)["count"]))
    base = uri_base or Path.cwd()

    def fail(item_id: str, uri: str | None, stage: str, reason: str) -> None:
        failure = Failure(item_id, uri, stage, reason)
        summary.failures.append(failure)
        if failure_log is not None:
            failure_log.record(failure)

    bar = Progress(
        TextColumn("[bold]embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("embed", total=summary.lacking)
        for listed in items_lacking(client, index, selected, list_batch):
            local: list[tuple[str, str, Path]] = []
            for item_id, uri in listed:
                path = resolve_uri(uri, base) if uri else None
                if path is None:
                    summary.no_image += 1
                else:
                    local.append((item_id, str(uri), path))
            vectors = _embed(encoder, local, batch_size, workers, fail)
            written = write_embeddings(client, index, vectors)
            summary.embedded += written.written
            summary.gone += written.missing
            for item_id, reason in written.failed:
                fail(item_id, None, "write", reason)
            bar.advance(task, len(listed))
    summary.seconds = time.perf_counter() - started
    return summary


def _embed(
    encoder: ClipEncoder,
    local: list[tuple[str, str, Path]],
    batch_size: int,
    workers: int,
    fail: Any,
) -> dict[str, Any]:
    """Item id -> embedding for the images that decode; the others are failed."""
    if not local:
        return {}
    dataset = ImageDataset(
        [str(path) for _, _, path in local],
        encoder.preprocessor,
        None,
        DEFAULT_MAX_PIXELS,
        min_side=encoder.input_min_side,
    )
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_init if workers else None,
    )
    vectors: dict[str, Any] = {}
    batch: Batch
    for batch in loader:
        for bad in batch.failed:
            item_id, uri, _ = local[bad.position]
            fail(item_id, uri, "decode", bad.reason)
        if not batch.decoded or batch.clip_inputs is None:
            continue
        features = encoder.encode_images(batch.clip_inputs).cpu().numpy()
        for decoded, vector in zip(batch.decoded, features, strict=True):
            vectors[local[decoded.position][0]] = vector
    return vectors
