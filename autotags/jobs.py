"""Create, refine, score and delete autotags: the jobs behind the API endpoints and the CLI.

- :func:`create` fits version 1 on the examples and scores every item with an embedding;
- :func:`refine` fits the next version: the previous version's examples, with every reviewed
  prediction of the autotag (any version, the latest decision per item) turned into an
  example: accepted a positive, rejected (or relabelled) a negative;
- :func:`score` writes one image prediction per item with an embedding, label = the autotag's
  name, training set ``autotag:<name>@<version>``, through the product's writer. Each item is
  read once, whole, from a point in time (its embedding is scored, the rest is what the writer
  merges into) and written back whole under the sequence numbers it was read with, so the
  writer reads nothing again; an item reviewed or changed since answers 409 and is re-read and
  merged as a partial update that leaves its embedding and review history as they are. It
  lists only items that version has not scored yet, so a stopped job resumes where it was and
  a finished one has nothing left to do;
- :func:`delete` takes every version's predictions off the items, then the autotag.

Older versions' predictions stay beside the new ones, so the facets' model comparison compares
``autotag:glare@1`` with ``autotag:glare@2``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import numpy as np
from elasticsearch import Elasticsearch

from autotags.registry import (
    TRAINING_SET_PREFIX,
    Autotag,
    AutotagError,
    Registry,
    Version,
    check_name,
    training_set_name,
)
from autotags.training import (
    Examples,
    LinearModel,
    example_vectors,
    fit,
    random_negative_count,
    random_negatives,
)
from store import schema as f
from store.clock import utc_iso
from store.embeddings import read_embedding_model
from store.schema import PredictionStatus
from store.snapshot import snapshot_pages
from store.writer import ItemPredictions, PredictionWriter, StoredItem

BATCH: Final = 1000
# What the writer's own partial updates (an item changed since scoring read it, deletes) leave
# alone: neither read nor rewritten.
UNTOUCHED: Final = (f.EMBEDDING, f.REVIEW_HISTORY)
# Save scoring progress in the registry every this many seconds.
PROGRESS_EVERY_S: Final = 5.0

Progress = Callable[[int, int], None]  # (done, total)


def _model(client: Elasticsearch, index: str) -> dict[str, Any]:
    model = read_embedding_model(client, index)
    if model is None:
        raise AutotagError(
            "no item of this index has an embedding: autotags are trained on them "
            "(`autotag index` stores them, `autotag embed` adds them)"
        )
    return model.to_meta()


def _fit_version(
    client: Elasticsearch,
    index: str,
    name: str,
    number: int,
    positives: dict[str, Any],
    negatives: dict[str, Any],
    random_count: int,
) -> Version:
    both = sorted(set(positives) & set(negatives))
    if both:
        raise AutotagError(f"items both positive and negative: {', '.join(both[:5])}")
    started = time.perf_counter()
    linear, summary = fit(np.stack(list(positives.values())), np.stack(list(negatives.values())))
    summary["seconds"] = time.perf_counter() - started
    return Version(
        version=number,
        training_set=training_set_name(name, number),
        created_at=utc_iso(),
        positives=sorted(positives),
        negatives=sorted(negatives),
        random_negatives=random_count,
        weights=[float(x) for x in linear.weights],
        bias=linear.bias,
        embedding_model=_model(client, index),
        fit=summary,
    )


def create(
    client: Elasticsearch,
    index: str,
    name: str,
    positives: Examples,
    negatives: Examples | None = None,
    *,
    description: str | None = None,
    seed: int = 0,
    run_scoring: bool = True,
    progress: Progress | None = None,
) -> Autotag:
    """Fit version 1 of autotag ``name`` and (unless told not to) score every item."""
    check_name(name)
    registry = Registry(client, index)
    if registry.get(name) is not None:
        raise AutotagError(f"autotag `{name}` exists: refine it, or delete it first", status=409)
    _model(client, index)
    if positives.empty:
        raise AutotagError("give positive examples: item ids or a query")
    found = example_vectors(client, index, positives, "positives")
    if not found:
        raise AutotagError("the positives query found no item with an embedding")
    if negatives is not None and not negatives.empty:
        against = example_vectors(client, index, negatives, "negatives")
        drawn = 0
    else:
        count = random_negative_count(len(found))
        against = random_negatives(client, index, list(found), count, seed)
        drawn = len(against)
    version = _fit_version(client, index, name, 1, found, against, drawn)
    autotag = registry.create(Autotag(name, utc_iso(), [version], description))
    if run_scoring:
        score(client, index, name, progress=progress)
        autotag = registry.require(name)
    return autotag


def reviewed(client: Elasticsearch, index: str, name: str) -> dict[str, bool]:
    """Item id -> the latest review decision on its predictions of ``name`` (any version):
    True when accepted (unchanged or with the same label), False when rejected or relabelled."""
    prefix = f"{TRAINING_SET_PREFIX}{name}@"
    path = f.IMAGE_PREDICTIONS
    decided = [s.value for s in PredictionStatus if s is not PredictionStatus.PENDING]
    query = {
        "nested": {
            "path": path,
            "query": {
                "bool": {
                    "filter": [
                        {"prefix": {f"{path}.{f.PRED_TRAINING_SET}": prefix}},
                        {"terms": {f"{path}.{f.PRED_STATUS}": decided}},
                    ]
                }
            },
        }
    }
    decisions: dict[str, bool] = {}
    for hits in _pages(client, index, query, [path], BATCH):
        for hit in hits:
            latest: tuple[int, bool] | None = None
            for prediction in hit["_source"].get(path) or ():
                training_set = str(prediction.get(f.PRED_TRAINING_SET, ""))
                status = prediction.get(f.PRED_STATUS, PredictionStatus.PENDING)
                if not training_set.startswith(prefix) or status == PredictionStatus.PENDING:
                    continue
                number = int(training_set.removeprefix(prefix) or 0)
                accepted = status != PredictionStatus.REJECTED and prediction["label"] == name
                if latest is None or number > latest[0]:
                    latest = (number, accepted)
            if latest is not None:
                decisions[str(hit["_id"])] = latest[1]
    return decisions


def refine(
    client: Elasticsearch,
    index: str,
    name: str,
    *,
    run_scoring: bool = True,
    progress: Progress | None = None,
) -> Autotag:
    """Fit the next version from the last one's examples and the reviews since (see above)."""
    registry = Registry(client, index)
    autotag = registry.require(name)
    last = autotag.latest
    if last.scoring.state != "done":
        raise AutotagError(
            f"version {last.version} of `{name}` is not scored yet ({last.scoring.state}): "
            "finish it first (`autotag autotags score`)",
            status=409,
        )
    decisions = reviewed(client, index, name)
    if not decisions:
        raise AutotagError(
            f"no prediction of `{name}` has been reviewed: accept or reject some, then refine"
        )
    positives, negatives = set(last.positives), set(last.negatives)
    for item_id, accepted in decisions.items():
        (positives if accepted else negatives).add(item_id)
        (negatives if accepted else positives).discard(item_id)
    ids = Examples(tuple(sorted(positives | negatives)))
    vectors = example_vectors_lenient(client, index, ids)
    version = _fit_version(
        client,
        index,
        name,
        last.version + 1,
        {i: vectors[i] for i in sorted(positives) if i in vectors},
        {i: vectors[i] for i in sorted(negatives) if i in vectors},
        last.random_negatives,
    )
    version.fit["reviews"] = {
        "accepted": sum(decisions.values()),
        "rejected": len(decisions) - sum(decisions.values()),
    }
    autotag.versions.append(version)
    registry.save(autotag)
    if run_scoring:
        score(client, index, name, progress=progress)
        autotag = registry.require(name)
    return autotag


def example_vectors_lenient(
    client: Elasticsearch, index: str, examples: Examples
) -> dict[str, Any]:
    """Like ``example_vectors`` by ids, leaving out items deleted or without an embedding."""
    found: dict[str, Any] = {}
    ids = list(examples.item_ids)
    for start in range(0, len(ids), BATCH):
        chunk = Examples(tuple(ids[start : start + BATCH]))
        try:
            found.update(example_vectors(client, index, chunk, "examples"))
        except AutotagError:
            for item_id in chunk.item_ids:
                try:
                    found.update(example_vectors(client, index, Examples((item_id,)), "example"))
                except AutotagError:
                    continue
    return found


def _pages(
    client: Elasticsearch, index: str, query: Mapping[str, Any], fields: list[str], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Hits of ``query`` (id and ``fields`` of the source), ``size`` at a time, from a snapshot."""
    source = {"includes": fields, "exclude_vectors": False}
    return snapshot_pages(client, index, size=size, source=source, query=query)


@dataclass
class _Clock:
    """Seconds per stage: reading items, scoring their embeddings, merging and waiting for the
    writes."""

    read: float = 0.0
    score: float = 0.0
    write: float = 0.0


def _update(registry: Registry, name: str, number: int, change: Callable[[Version], None]) -> None:
    """Apply ``change`` to version ``number`` in the registry (re-reading on a conflict)."""
    for _ in range(10):
        autotag = registry.require(name)
        version = next(v for v in autotag.versions if v.version == number)
        change(version)
        try:
            registry.save(autotag)
            return
        except AutotagError as error:
            if error.status != 409:
                raise
    raise AutotagError(f"could not save `{name}`: too many concurrent changes", status=409)


def score(
    client: Elasticsearch,
    index: str,
    name: str,
    *,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> Version:
    """Score every item with an embedding that the latest version has not scored yet."""
    registry = Registry(client, index)
    autotag = registry.require(name)
    version = autotag.latest
    if version.scoring.state == "done":
        return version
    training_set = version.training_set
    model = LinearModel(np.asarray(version.weights, dtype=np.float32), version.bias)
    with_embedding = {"exists": {"field": f.EMBEDDING}}
    scored = {"term": {f.TAGGED_BY: training_set}}
    client.indices.refresh(index=index)  # what a stopped run wrote counts as scored
    total = int(client.count(index=index, query=with_embedding)["count"])
    done = int(
        client.count(index=index, query={"bool": {"filter": [with_embedding, scored]}})["count"]
    )

    def running(v: Version) -> None:
        v.scoring.state = "running"
        v.scoring.total = total
        v.scoring.scored = done
        v.scoring.started_at = v.scoring.started_at or utc_iso()
        v.scoring.error = None

    _update(registry, name, version.version, running)
    writer = PredictionWriter(
        client, index, training_set=training_set, untouched=UNTOUCHED, batch_size=batch
    )
    clock = _Clock()
    failed = 0
    saved_at = time.monotonic()
    todo = {"bool": {"filter": [with_embedding], "must_not": [scored]}}
    prediction = {f.PRED_LABEL: name, f.PRED_MODEL: training_set}
    if progress is not None:
        progress(done, total)
    try:
        pages = snapshot_pages(
            client,
            index,
            size=batch,
            source={"exclude_vectors": False},  # whole: written back as read, merged
            query=todo,
            sequence_numbers=True,
        )

        def batches() -> Iterator[list[ItemPredictions]]:
            """Scored pages, read and scored in this thread while earlier ones are written."""
            while True:
                started = time.perf_counter()
                hits = next(pages, None)
                clock.read += time.perf_counter() - started
                if hits is None:
                    return
                started = time.perf_counter()
                vectors = np.asarray([h["_source"][f.EMBEDDING] for h in hits], dtype=np.float32)
                values = model.scores(vectors).tolist()
                entries = [
                    ItemPredictions(
                        {f.ITEM_ID: str(hit["_id"])},
                        [{**prediction, f.PRED_SCORE: min(1.0, max(-1.0, value))}],
                        stored=StoredItem.from_hit(hit),
                    )
                    for hit, value in zip(hits, values, strict=True)
                ]
                clock.score += time.perf_counter() - started
                yield entries

        started = time.perf_counter()
        for result in writer.write_many(batches(), in_flight=2):
            done += result.written + result.skipped
            failed += len(result.failed)
            if progress is not None:
                progress(done, total)
            if time.monotonic() - saved_at > PROGRESS_EVERY_S:
                saved_at = time.monotonic()
                _update(registry, name, version.version, partial(_count, done=done, failed=failed))
        # writes overlap reading and scoring: what is left of the wall time waited for them
        clock.write = time.perf_counter() - started - clock.read - clock.score
    except BaseException as error:
        reason = f"{type(error).__name__}: {error}"

        def stopped(v: Version) -> None:
            v.scoring.state = "failed"
            v.scoring.error = reason
            _count(v, done, failed)

        _update(registry, name, version.version, stopped)
        raise

    def finished(v: Version) -> None:
        v.scoring.state = "done" if failed == 0 else "failed"
        v.scoring.error = None if failed == 0 else f"{failed} item(s) could not be written"
        v.scoring.finished_at = utc_iso()
        v.scoring.seconds = {
            "read": round(clock.read, 3),
            "score": round(clock.score, 3),
            "write": round(clock.write, 3),
        }
        _count(v, done, failed)

    _update(registry, name, version.version, finished)
    client.indices.refresh(index=index)
    return registry.require(name).latest


def _count(version: Version, done: int, failed: int) -> None:
    version.scoring.scored = done
    version.scoring.failed = failed


def delete(
    client: Elasticsearch, index: str, name: str, *, progress: Progress | None = None
) -> int:
    """Take every version's predictions off the items, then forget the autotag; items changed."""
    registry = Registry(client, index)
    autotag = registry.require(name)
    training_sets = [version.training_set for version in autotag.versions]
    writer = PredictionWriter(client, index, training_set=training_sets[0], untouched=UNTOUCHED)
    query = {"terms": {f.TAGGED_BY: training_sets}}
    total = int(client.count(index=index, query=query)["count"])
    changed = done = 0
    for hits in _pages(client, index, query, [f.ITEM_ID], BATCH):
        result = writer.remove([str(hit["_id"]) for hit in hits], training_sets)
        if result.failed:
            raise AutotagError(
                f"could not take `{name}` off {len(result.failed)} item(s) (first: "
                f"{result.failed[0]}); run the delete again",
                status=503,
            )
        changed += result.written
        done += len(hits)
        if progress is not None:
            progress(done, total)
    client.indices.refresh(index=index)
    registry.delete(name)
    return changed
