"""Writing imported ground truth beside the predictions, one named source at a time.

An item's ground truth lives in ``truth_images`` and ``truth_objects`` (store.schema); every
annotation carries its ``source``, and the item's ``truth_source`` lists the sources that
annotated it, also when they found nothing on it. Writing a source replaces that source's
annotations on the item and leaves everything else alone: other sources, the predictions, the
review decisions, ``tagged_by``. Item fields the truth file gives (size, uri...) fill in only
what the item lacks. Items that do not exist yet are created, so truth may be imported before
or after the images are indexed.

The read-merge-write loop, its batching and its conflict retries are the prediction writer's
(:class:`store.writer.PredictionWriter`); only the merge differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from elasticsearch import Elasticsearch

from store import schema as f
from store.documents import finish_item, prepare_annotation
from store.writer import InvalidPrediction, ItemPredictions, PredictionWriter


def _annotations(source: str, kind: str, raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for position, annotation in enumerate(raw):
        label = annotation.get(f.PRED_LABEL)
        if not isinstance(label, str) or not label.strip():
            raise InvalidPrediction(f"{kind} annotation without a label")
        if kind == "object" and not isinstance(annotation.get(f.PRED_BBOX), Mapping):
            raise InvalidPrediction(f"object annotation {label!r} has no bbox")
        prepared = prepare_annotation({**annotation, f.ANNOTATION_SOURCE: source})
        prepared.setdefault(f.PRED_ID, f"{source}:{kind}:{position}")
        if kind == "object":
            prepared[f.ANNOTATION_CROWD] = bool(prepared.get(f.ANNOTATION_CROWD, False))
        out.append(prepared)
    return out


def merge_truth(
    existing: Mapping[str, Any] | None, entry: ItemPredictions, *, source: str, now: str
) -> dict[str, Any]:
    """The item after replacing ``source``'s annotations with ``entry``'s (see the module)."""
    merged: dict[str, Any] = dict(existing or {})
    for key, value in entry.item.items():
        merged.setdefault(key, value)
    merged[f.ITEM_ID] = entry.item_id
    merged[f.UPDATED_AT] = now
    for kind, path, incoming in (
        ("image", f.TRUTH_IMAGES, entry.image_predictions),
        ("object", f.TRUTH_OBJECTS, entry.object_predictions),
    ):
        kept = [a for a in merged.get(path) or () if a.get(f.ANNOTATION_SOURCE) != source]
        merged[path] = kept + _annotations(source, kind, incoming)
    sources = list(merged.get(f.TRUTH_SOURCE) or ())
    if source not in sources:
        sources.append(source)
    merged[f.TRUTH_SOURCE] = sources
    for path in f.PREDICTION_PATHS:
        merged.setdefault(path, [])
    return finish_item(merged)


class TruthWriter(PredictionWriter):
    """Writes one ground-truth source; ``ItemPredictions`` carry annotations here (the image
    list: image-level labels; the object list: boxes with ``iscrowd``). A source written again
    replaces its annotations, so every import is written (nothing is skipped as done)."""

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        *,
        source: str,
        batch_size: int = 500,
        max_attempts: int = 6,
        backoff_s: float = 0.25,
        refresh: bool = False,
    ) -> None:
        super().__init__(
            client,
            index,
            training_set=source,
            force=True,
            batch_size=batch_size,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            refresh=refresh,
        )
        self.source = source

    def _writing(self, entry: ItemPredictions) -> set[str]:
        return {self.source}

    def _done(self, source: Mapping[str, Any], writing: set[str]) -> bool:
        return False

    def _merge(
        self,
        source: Mapping[str, Any] | None,
        entry: ItemPredictions,
        *,
        now: str,
        writing: set[str],
    ) -> dict[str, Any]:
        return merge_truth(source, entry, source=self.source, now=now)

    def _count(self, merged: Mapping[str, Any], writing: set[str]) -> int:
        return sum(
            1
            for path in f.TRUTH_PATHS
            for a in merged.get(path) or ()
            if a.get(f.ANNOTATION_SOURCE) == self.source
        )
