"""Write one training set's predictions into item documents, safely and in batches.

There are no scripts on our Elasticsearch, so merging is read-modify-write: ``mget`` the
current documents with their ``_seq_no``/``_primary_term``, merge in Python, and write back with
``if_seq_no``/``if_primary_term`` (``create`` for new items). A concurrent change makes that
item's write fail with 409; it is then re-read and merged again, a bounded number of times.

Merge rules:
- predictions of other training sets are kept side by side (model comparison);
- predictions of this training set that a reviewer touched (any status but ``pending``) are
  never replaced; a recomputed prediction with the same id as a reviewed one is dropped;
- pending predictions of this training set are replaced by the new ones;
- an item already tagged by this training set is skipped unless ``force`` is set.

A batch is first sent as ``create`` operations without reading (cheap when items are new, as
in a first load); items that exist answer 409 and take the read-merge-write path, and once most
of a batch exists the writer reads first again.

A caller that has already read the items whole (every field, vectors included, with their
sequence numbers: a job paging through the index) hands each one over as ``ItemPredictions.
stored``: the writer merges into that and writes it back whole under the same
``if_seq_no``/``if_primary_term`` check, with no ``mget`` and no merge left to Elasticsearch.
An item changed since it was read answers 409 and takes the read-merge-write path.

Every item document is written whole, so a crash between batches loses nothing already
acknowledged and a rerun writes each item exactly once. A writer given ``untouched`` fields
(say the embedding, hundreds of floats, and the review history) neither reads nor writes them:
existing items it reads itself are then written as partial updates (bulk ``update`` with
``doc`` and the same ``if_seq_no``/``if_primary_term`` check), which leave those fields as they
are.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as EsConnectionError

from store import schema as f
from store.clock import utc_iso
from store.documents import finish_item
from store.schema import PredictionStatus

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class StoredItem:
    """An item document as its caller read it: the whole source (every field, vectors
    included) and the sequence numbers that guard writing it back."""

    source: Mapping[str, Any]
    seq_no: int
    primary_term: int

    @classmethod
    def from_hit(cls, hit: Mapping[str, Any]) -> StoredItem:
        """From a hit read with its whole ``_source`` and ``seq_no_primary_term``."""
        return cls(hit["_source"], int(hit["_seq_no"]), int(hit["_primary_term"]))


@dataclass(frozen=True)
class ItemPredictions:
    """One item and the predictions a model made for it; ``stored`` when the caller has read
    the item whole already (see the module notes), so the writer need not read it again."""

    item: Mapping[str, Any]
    image_predictions: Sequence[Mapping[str, Any]] = ()
    object_predictions: Sequence[Mapping[str, Any]] = ()
    stored: StoredItem | None = None

    @property
    def item_id(self) -> str:
        return str(self.item[f.ITEM_ID])


@dataclass
class WriteResult:
    """What a write did: items written or skipped, predictions written, failures with reasons."""

    written: int = 0
    skipped: int = 0
    predictions: int = 0
    retries: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: WriteResult) -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.predictions += other.predictions
        self.retries += other.retries
        self.failed.extend(other.failed)


# One item in a bulk request: its id, the document sent, the training sets it writes.
_Sent = tuple[str, dict[str, Any], set[str]]


@dataclass
class _FirstSend:
    """Operations built without reading: ``create`` for items that look new, or ``index``
    over the stored items callers handed over; and what each operation sends."""

    operations: list[Mapping[str, Any]]
    sent: list[_Sent]
    creating: bool


@dataclass
class _Prepared:
    """A chunk after the CPU stage of ``write_many``: what to send, what is left to settle."""

    pending: dict[str, ItemPredictions] = field(default_factory=dict)
    result: WriteResult = field(default_factory=WriteResult)
    first: _FirstSend | None = None


def _joined(chunks: Sequence[Future[WriteResult]]) -> WriteResult:
    """One batch's result from its chunks' (waiting for each)."""
    result = WriteResult()
    for future in chunks:
        result.add(future.result())
    return result


class InvalidPrediction(ValueError):
    """A prediction that cannot be stored (bad score, missing label, ...)."""


def prediction_id(training_set: str, kind: str, prediction: Mapping[str, Any]) -> str:
    """A stable id: the same model output for the same item gets the same id on every run."""
    bbox = prediction.get(f.PRED_BBOX)
    box = ",".join(f"{float(bbox[k]):.1f}" for k in ("x1", "y1", "x2", "y2")) if bbox else ""
    key = f"{training_set}\x1f{kind}\x1f{prediction[f.PRED_LABEL]}\x1f{box}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


_NUMBER = (int, float)


def _validated(
    prediction: Mapping[str, Any], *, kind: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """A checked copy of ``prediction`` with defaults and derived fields filled in.

    The hot path of every load (one call per prediction), hence the plain checks: a score
    that is NaN or infinite fails the range test.
    """
    label = prediction.get(f.PRED_LABEL)
    if not isinstance(label, str) or not label.strip():
        raise InvalidPrediction(f"{kind} prediction without a label")
    score = prediction.get(f.PRED_SCORE)
    if not isinstance(score, _NUMBER) or not -1 <= score <= 1:
        raise InvalidPrediction(f"{kind} prediction {label!r}: score {score!r} is not in [-1, 1]")
    if kind == "object" and prediction.get(f.PRED_BBOX) is None:
        raise InvalidPrediction(f"object prediction {label!r} has no bbox")
    out = {**defaults, **prediction}
    if f.PRED_ID not in out:
        out[f.PRED_ID] = prediction_id(out[f.PRED_TRAINING_SET], kind, out)
    out[f.PRED_LABEL_PREFIXES] = f.label_prefixes(label)
    return out


def _unique_ids(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two detections with the same label and (rounded) box would share an id: number them."""
    seen: dict[str, int] = {}
    for prediction in predictions:
        pid = prediction[f.PRED_ID]
        if pid in seen:
            seen[pid] += 1
            prediction[f.PRED_ID] = f"{pid}-{seen[pid]}"
        else:
            seen[pid] = 0
    return predictions


def incoming_training_sets(entry: ItemPredictions, default: str) -> set[str]:
    """The training sets ``entry`` writes: the writer's own, plus any a prediction names."""
    named = {
        str(p[f.PRED_TRAINING_SET])
        for p in (*entry.image_predictions, *entry.object_predictions)
        if p.get(f.PRED_TRAINING_SET)
    }
    return named | {default}


def merge_item(
    existing: Mapping[str, Any] | None,
    new: ItemPredictions,
    *,
    training_set: str,
    now: str,
    writing: set[str] | None = None,
) -> dict[str, Any]:
    """The item document after writing ``new`` over ``existing`` (see the module rules).

    Predictions without a ``training_set`` get ``training_set``; an item may carry several
    (whole-item imports and load tests), and each one it carries is merged by the same rules.
    ``writing`` is ``incoming_training_sets(new, training_set)`` when the caller has it.
    """
    if writing is None:
        writing = incoming_training_sets(new, training_set)
    defaults = {
        f.PRED_TRAINING_SET: training_set,
        f.PRED_STATUS: PredictionStatus.PENDING.value,
        f.PRED_CREATED_AT: now,
        f.PRED_MODEL: "unknown",
    }
    merged: dict[str, Any] = dict(existing or {})
    merged.update(new.item)
    merged[f.ITEM_ID] = new.item_id
    merged[f.UPDATED_AT] = now
    for kind, path, incoming in (
        ("image", f.IMAGE_PREDICTIONS, new.image_predictions),
        ("object", f.OBJECT_PREDICTIONS, new.object_predictions),
    ):
        kept = [
            p
            for p in merged.get(path) or ()
            if p.get(f.PRED_TRAINING_SET) not in writing
            or p.get(f.PRED_STATUS, PredictionStatus.PENDING) != PredictionStatus.PENDING
        ]
        kept_ids = {p.get(f.PRED_ID) for p in kept}
        fresh = [_validated(p, kind=kind, defaults=defaults) for p in incoming]
        merged[path] = kept + [p for p in _unique_ids(fresh) if p[f.PRED_ID] not in kept_ids]
    tagged_by = list(merged.get(f.TAGGED_BY) or ())
    tagged_by += sorted(writing.difference(tagged_by))
    merged[f.TAGGED_BY] = tagged_by
    # Kept predictions come from stored documents and fresh ones were prepared above.
    return finish_item(merged)


def _count_predictions(doc: Mapping[str, Any], training_sets: set[str]) -> int:
    return sum(
        1
        for path in f.PREDICTION_PATHS
        for p in doc.get(path) or ()
        if p.get(f.PRED_TRAINING_SET) in training_sets
    )


class PredictionWriter:
    """Batched, concurrency-safe writer of one training set's predictions."""

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        *,
        training_set: str,
        force: bool = False,
        batch_size: int = 500,
        max_attempts: int = 6,
        backoff_s: float = 0.25,
        refresh: bool = False,
        expect_new: bool = True,
        untouched: Sequence[str] = (),
    ) -> None:
        if not training_set.strip():
            raise ValueError("a training set name is required")
        self.client = client
        self.index = index
        self.training_set = training_set
        self.force = force
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.refresh = refresh
        self.untouched = tuple(untouched)
        # Whether the next batch is probably all new items (see ``_build_creates``); False
        # when the caller knows the items exist (runs over registered items), or leaves fields
        # untouched (for items that exist).
        self._expect_new = expect_new and not self.untouched

    def already_tagged(self, item_ids: Sequence[str]) -> set[str]:
        """The ids among ``item_ids`` that this training set has already tagged."""
        tagged: set[str] = set()
        for start in range(0, len(item_ids), self.batch_size):
            chunk = list(item_ids[start : start + self.batch_size])
            docs = self._call(
                partial(
                    self.client.mget, index=self.index, ids=chunk, source_includes=[f.TAGGED_BY]
                )
            )
            for doc in docs["docs"]:
                if doc.get("found") and self.training_set in (
                    doc["_source"].get(f.TAGGED_BY) or ()
                ):
                    tagged.add(doc["_id"])
        return tagged

    # What varies between writers of the same read-merge-write loop (store.truth's too):

    def _writing(self, entry: ItemPredictions) -> set[str]:
        """The training sets ``entry`` writes."""
        return incoming_training_sets(entry, self.training_set)

    def _done(self, source: Mapping[str, Any], writing: set[str]) -> bool:
        """Whether the stored item already has what ``entry`` writes (skipped unless forced)."""
        return writing <= set(source.get(f.TAGGED_BY, ()))

    def _merge(
        self,
        source: Mapping[str, Any] | None,
        entry: ItemPredictions,
        *,
        now: str,
        writing: set[str],
    ) -> dict[str, Any]:
        return merge_item(source, entry, training_set=self.training_set, now=now, writing=writing)

    def _count(self, merged: Mapping[str, Any], writing: set[str]) -> int:
        """Predictions (or annotations) a written item counts in the result."""
        return _count_predictions(merged, writing)

    def write(self, batch: Sequence[ItemPredictions]) -> WriteResult:
        """Merge and write ``batch`` (any size; sent in chunks of ``batch_size``)."""
        result = WriteResult()
        for chunk in self._chunks(batch):
            result.add(self._complete(self._prepare(chunk)))
        return result

    def write_many(
        self, batches: Iterable[Sequence[ItemPredictions]], *, in_flight: int = 2
    ) -> Iterator[WriteResult]:
        """Write batches with up to ``in_flight`` bulk requests under way, results in order.

        Two stages: documents are built in the calling thread (the Python work) while worker
        threads send the batches built before and settle their outcome, so building batch
        N+1 overlaps Elasticsearch indexing batch N. Items repeated across batches stay
        correct: a concurrent write makes the later one conflict, re-read and merge.
        Yields one result per batch, in input order, as each completes.
        """
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            pending: deque[list[Future[WriteResult]]] = deque()
            for batch in batches:
                chunks = []
                for chunk in self._chunks(batch):
                    prepared = self._prepare(chunk)
                    while pending and sum(map(len, pending)) >= in_flight:
                        yield _joined(pending.popleft())
                    chunks.append(pool.submit(self._complete, prepared))
                pending.append(chunks)
                while pending and all(future.done() for future in pending[0]):
                    yield _joined(pending.popleft())
            while pending:
                yield _joined(pending.popleft())

    def remove(
        self, item_ids: Sequence[str], training_sets: Collection[str] | None = None
    ) -> WriteResult:
        """Take every prediction of this training set, or of ``training_sets`` (reviewed ones
        too), off ``item_ids``.

        ``written`` counts the items changed; the same concurrency checks as :meth:`write`.
        """
        result = WriteResult()
        removing = set(training_sets or (self.training_set,))
        pending = list(dict.fromkeys(item_ids))
        for attempt in range(self.max_attempts):
            if not pending:
                break
            if attempt:
                result.retries += len(pending)
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            pending = self._remove_once(pending, removing, result)
        result.failed += [(i, f"gave up after {self.max_attempts} attempts") for i in pending]
        return result

    def _remove_once(
        self, item_ids: list[str], removing: set[str], result: WriteResult
    ) -> list[str]:
        excludes = list(self.untouched) or None
        current = self._call(
            lambda: self.client.mget(index=self.index, ids=item_ids, source_excludes=excludes)
        )
        now = utc_iso()
        operations: list[Mapping[str, Any]] = []
        sent: list[str] = []
        for doc in current["docs"]:
            if not doc.get("found"):
                continue
            source = dict(doc["_source"])
            for path in f.PREDICTION_PATHS:
                if path in source:
                    source[path] = [
                        p for p in source[path] if p.get(f.PRED_TRAINING_SET) not in removing
                    ]
            source[f.TAGGED_BY] = [t for t in source.get(f.TAGGED_BY) or () if t not in removing]
            source[f.UPDATED_AT] = now
            finish_item(source)
            guard = self._guard(str(doc["_id"]), StoredItem.from_hit(doc))
            if self.untouched:
                fields = {k: v for k, v in source.items() if k not in self.untouched}
                operations.extend(({"update": guard}, {"doc": fields}))
            else:
                operations.extend(({"index": guard}, source))
            sent.append(str(doc["_id"]))
        if not operations:
            return []
        response = self._call(
            lambda: self.client.bulk(
                operations=operations,
                refresh="wait_for" if self.refresh else False,
                filter_path=["items.*.status", "items.*.error.reason"],
            )
        )
        retry: list[str] = []
        for item_id, outcome in zip(sent, response["items"], strict=True):
            status = next(iter(outcome.values()))
            code = int(status.get("status", 500))
            if code < 300:
                result.written += 1
            elif code == 409 or code in RETRYABLE_STATUSES:
                retry.append(item_id)
            elif code != 404:
                result.failed.append((item_id, str(status.get("error", {}).get("reason", code))))
        return retry

    def _chunks(self, batch: Sequence[ItemPredictions]) -> Iterator[Sequence[ItemPredictions]]:
        for start in range(0, len(batch), self.batch_size):
            yield batch[start : start + self.batch_size]

    def _prepare(self, chunk: Sequence[ItemPredictions]) -> _Prepared:
        """The CPU part of a chunk: duplicate check and, while items look new, their documents."""
        prepared = _Prepared()
        for entry in chunk:
            if entry.item_id in prepared.pending:
                prepared.result.failed.append(
                    (entry.item_id, "duplicate item id in the same batch")
                )
            else:
                prepared.pending[entry.item_id] = entry
        if any(entry.stored is not None for entry in prepared.pending.values()):
            self._build_rewrites(prepared)
        elif self._expect_new and prepared.pending:
            self._build_creates(prepared)
        return prepared

    def _complete(self, prepared: _Prepared) -> WriteResult:
        """Send what ``_prepare`` built, then read-merge-write whatever is left, with retries."""
        result = prepared.result
        pending = prepared.pending
        if (first := prepared.first) is not None:
            sent_ids = {item_id for item_id, _, _ in first.sent}
            unsent = {k: v for k, v in pending.items() if k not in sent_ids}
            retry = self._send(first.operations, first.sent, pending, result)
            if first.creating:
                self._expect_new = 2 * len(retry) < len(first.sent)
            pending = {**unsent, **retry}
        for attempt in range(self.max_attempts):
            if not pending:
                break
            if attempt:
                result.retries += len(pending)
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            pending = self._attempt(pending, result)
        for item_id in pending:
            result.failed.append((item_id, f"gave up after {self.max_attempts} attempts"))
        return result

    def _build_creates(self, prepared: _Prepared) -> None:
        """Every item as a new document (``create``), to send without reading first.

        ``create`` never overwrites: an item that already exists answers 409 and goes on to
        the read-merge-write path. While most items of a batch turn out new (a first load, new
        uploads) this saves the ``mget``; once most exist, later batches read first again.
        Items that cannot be stored are failed here and dropped from ``prepared.pending``.
        """
        now = utc_iso()
        operations: list[Mapping[str, Any]] = []
        sent: list[_Sent] = []
        for item_id, entry in list(prepared.pending.items()):
            writing = self._writing(entry)
            merged = self._merged(None, entry, now, writing, prepared.result)
            if merged is None:
                del prepared.pending[item_id]
                continue
            operations.extend(({"create": {"_index": self.index, "_id": item_id}}, merged))
            sent.append((item_id, merged, writing))
        prepared.first = _FirstSend(operations, sent, creating=True)

    def _build_rewrites(self, prepared: _Prepared) -> None:
        """Every item handed over with ``stored`` merged into it and written back whole
        (``index`` guarded by its sequence numbers), without reading; the others are left to
        the read-merge-write path. Items already done are skipped, bad ones failed."""
        now = utc_iso()
        operations: list[Mapping[str, Any]] = []
        sent: list[_Sent] = []
        for item_id, entry in list(prepared.pending.items()):
            if entry.stored is None:
                continue
            writing = self._writing(entry)
            merged = self._merged(entry.stored.source, entry, now, writing, prepared.result)
            if merged is None:
                del prepared.pending[item_id]
                continue
            operations.extend(({"index": self._guard(item_id, entry.stored)}, merged))
            sent.append((item_id, merged, writing))
        prepared.first = _FirstSend(operations, sent, creating=False)

    def _merged(
        self,
        source: Mapping[str, Any] | None,
        entry: ItemPredictions,
        now: str,
        writing: set[str],
        result: WriteResult,
    ) -> dict[str, Any] | None:
        """``entry`` merged into the stored ``source`` (None: a new item); None when the item
        already has it (skipped) or it cannot be stored (failed), counted in ``result``."""
        if source is not None and not self.force and self._done(source, writing):
            result.skipped += 1
            return None
        try:
            return self._merge(source, entry, now=now, writing=writing)
        except (InvalidPrediction, KeyError, TypeError, ValueError) as error:
            result.failed.append((entry.item_id, str(error)))
            return None

    def _guard(self, item_id: str, stored: StoredItem) -> dict[str, Any]:
        """The bulk action header that writes ``item_id`` only while it is as ``stored``."""
        return {
            "_index": self.index,
            "_id": item_id,
            "if_seq_no": stored.seq_no,
            "if_primary_term": stored.primary_term,
        }

    def _attempt(
        self, pending: dict[str, ItemPredictions], result: WriteResult
    ) -> dict[str, ItemPredictions]:
        """One read-merge-write round; returns the entries to try again."""
        current = self._call(
            lambda: self.client.mget(
                index=self.index, ids=list(pending), source_excludes=list(self.untouched) or None
            )
        )
        now = utc_iso()
        operations: list[Mapping[str, Any]] = []
        sent: list[_Sent] = []
        for doc in current["docs"]:
            item_id = doc["_id"]
            entry = pending[item_id]
            stored = StoredItem.from_hit(doc) if doc.get("found") else None
            writing = self._writing(entry)
            source = None if stored is None else stored.source
            merged = self._merged(source, entry, now, writing, result)
            if merged is None:
                continue
            if stored is not None:
                guard = self._guard(item_id, stored)
                if self.untouched:  # a partial update: the fields not read stay as they are
                    fields = {k: v for k, v in merged.items() if k not in self.untouched}
                    operations.extend(({"update": guard}, {"doc": fields}))
                    sent.append((item_id, merged, writing))
                    continue
                action = {"index": guard}
            else:
                action = {"create": {"_index": self.index, "_id": item_id}}
            operations.extend((action, merged))
            sent.append((item_id, merged, writing))
        return self._send(operations, sent, pending, result)

    def _send(
        self,
        operations: list[Mapping[str, Any]],
        sent: list[_Sent],
        pending: dict[str, ItemPredictions],
        result: WriteResult,
    ) -> dict[str, ItemPredictions]:
        """Bulk-write ``operations``; count what landed, return what must be tried again."""
        if not operations:
            return {}
        response = self._call(
            lambda: self.client.bulk(
                operations=operations,
                refresh="wait_for" if self.refresh else False,
                # Only what is read below: parsing 1,000 full item results costs real time.
                filter_path=["items.*.status", "items.*.error.reason"],
            )
        )
        retry: dict[str, ItemPredictions] = {}
        for (item_id, merged, writing), outcome in zip(sent, response["items"], strict=True):
            status = next(iter(outcome.values()))
            code = int(status.get("status", 500))
            if code < 300:
                result.written += 1
                result.predictions += self._count(merged, writing)
            elif code == 409 or code in RETRYABLE_STATUSES:
                retry[item_id] = pending[item_id]
            else:
                reason = status.get("error", {}).get("reason", f"status {code}")
                result.failed.append((item_id, str(reason)))
        return retry

    def _call(self, request: Any) -> Any:
        """Run one whole request, retrying on overload, 5xx and lost connections."""
        for attempt in range(self.max_attempts):
            try:
                return request()
            except ApiError as error:
                if error.status_code not in RETRYABLE_STATUSES or attempt == self.max_attempts - 1:
                    raise
            except EsConnectionError:
                if attempt == self.max_attempts - 1:
                    raise
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")
