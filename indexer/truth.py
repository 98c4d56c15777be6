"""``autotag import-truth``: ground truth from COCO instances or JSONL, as a named source.

Two formats:

- **JSONL**, one item per line (the synthetic world's ``ground_truth.jsonl`` is one)::

      {"item_id": "cam1/0001.png", "tags": ["weather_rain"],
       "objects": [{"label": "car", "bbox": [x1, y1, x2, y2], "iscrowd": false}]}

  ``bbox`` may also be ``{x1, y1, x2, y2}``; item fields (``dataset``, ``uri``, ``width``,
  ``height``, ``metadata``) fill in what the item lacks; ``file`` is accepted and not stored.
- **COCO instances** (``images``, ``annotations`` with ``bbox: [x, y, w, h]`` and
  ``iscrowd``, ``categories``). Item ids follow the folder rule of ``index`` and of COCO
  prediction imports (``DATASET/file_name``). Every listed image is annotated by the source,
  with or without objects: an image with no objects is truth too (every detection on it is
  wrong).

Labels are normalised exactly like prediction imports (:class:`indexer.importer.LabelPolicy`:
the taxonomy's ``object_classes`` first, then :func:`indexer.taxonomy.normalise_label`), so
COCO's ``person`` is a ``pedestrian`` in the truth as in the predictions. Bad records fail on
their own; the rest is imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from indexer import coco
from indexer.importer import (
    LabelPolicy,
    RecordError,
    _bbox,
    _load_json,
    jsonl_entries,
    record_item,
)
from indexer.report import Failure
from indexer.taxonomy import Taxonomy, load_taxonomy
from store import schema as f
from store.writer import ItemPredictions

TAGS: Final = "tags"
OBJECTS: Final = "objects"
_IGNORED: Final = frozenset({"file"})


@dataclass
class TruthBatch:
    """Entries to write (lazily read) and the label counts, complete once consumed."""

    source: str
    labels: LabelPolicy
    entries: list[ItemPredictions | Failure] | Iterator[ItemPredictions | Failure] = field(
        default_factory=list
    )

    def summary_notes(self) -> list[str]:
        new = self.labels.new
        shown = ", ".join(sorted(new)[:10]) + (", ..." if len(new) > 10 else "")
        lines = [f"ground-truth source: {self.source}"]
        lines.append(
            f"new labels (not in the taxonomy): {len(new)}" + (f" ({shown})" if new else "")
        )
        if self.labels.dropped:
            lines.append(f"{self.labels.dropped} annotation(s) dropped: label not in the taxonomy")
        return lines


def _object(raw: Any, labels: LabelPolicy) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        raise RecordError("an object is not a JSON object")
    unknown = set(raw) - {f.PRED_LABEL, f.PRED_BBOX, f.ANNOTATION_CROWD}
    if unknown:
        raise RecordError(f"unknown object field(s): {', '.join(sorted(unknown))}")
    name = raw.get(f.PRED_LABEL)
    if not isinstance(name, str):
        raise RecordError(f"an object's label {name!r} is not text")
    crowd = raw.get(f.ANNOTATION_CROWD, False)
    if crowd not in (True, False, 0, 1):
        raise RecordError(f"iscrowd must be true/false or 0/1, not {crowd!r}")
    bbox = _bbox(raw.get(f.PRED_BBOX))
    label = labels.label(name, "object")
    if label is None:
        return None
    return {f.PRED_LABEL: label, f.PRED_BBOX: bbox, f.ANNOTATION_CROWD: bool(crowd)}


def parse_truth_record(record: Any, *, dataset: str | None, labels: LabelPolicy) -> ItemPredictions:
    """One JSONL record -> the truth writer's input; raises :class:`RecordError`."""
    item = record_item(record, dataset, {TAGS, OBJECTS} | _IGNORED)
    scratch = LabelPolicy(labels.taxonomy, labels.taxonomy_only)
    tags = record.get(TAGS) or []
    objects = record.get(OBJECTS) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RecordError("tags must be a list of labels")
    if not isinstance(objects, list):
        raise RecordError("objects must be a list")
    images = []
    for name in dict.fromkeys(tags):
        label = scratch.label(name, "image")
        if label is not None:
            images.append({f.PRED_LABEL: label})
    boxes = [o for o in (_object(raw, scratch) for raw in objects) if o is not None]
    labels.merge(scratch)
    return ItemPredictions(item, images, boxes)


def read_truth_jsonl(
    path: Path,
    *,
    source: str,
    dataset: str | None = None,
    taxonomy: Taxonomy | None = None,
    taxonomy_only: bool = False,
) -> TruthBatch:
    """Stream the records of a ground-truth JSONL file (see the module docstring)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    batch = TruthBatch(source, LabelPolicy(taxonomy or load_taxonomy(), taxonomy_only))

    def parse(record: Any) -> ItemPredictions:
        return parse_truth_record(record, dataset=dataset, labels=batch.labels)

    batch.entries = jsonl_entries(path, parse)
    return batch


def read_truth_coco(
    instances_path: Path,
    *,
    source: str,
    dataset: str | None = None,
    taxonomy: Taxonomy | None = None,
    taxonomy_only: bool = False,
) -> TruthBatch:
    """A COCO instances file -> one entry per listed image (see the module docstring)."""
    data = _load_json(instances_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{instances_path}: no `images` list (a COCO instances file)")
    categories = coco.categories(data)
    batch = TruthBatch(source, LabelPolicy(taxonomy or load_taxonomy(), taxonomy_only))
    name = instances_path.name
    entries: list[ItemPredictions | Failure] = []
    by_image = coco.ByImage()
    for number, annotation in enumerate(data.get("annotations") or ()):
        where = f"{name}: annotations[{number}]"
        try:
            image_id = annotation["image_id"]
            category = annotation["category_id"]
            x, y, w, h = (float(v) for v in annotation["bbox"])
            crowd = annotation.get("iscrowd", 0)
        except (KeyError, TypeError, ValueError) as error:
            entries.append(Failure(None, None, "source", f"{where}: bad annotation {error!r}"))
            continue
        label_name = categories.get(category)
        if label_name is None:
            reason = f"{where}: category_id {category!r} is not in the categories"
            by_image.failed.setdefault(image_id, reason)
            continue
        scratch = by_image.labels.setdefault(
            image_id, LabelPolicy(batch.labels.taxonomy, taxonomy_only)
        )
        try:
            box = _object(
                {"label": label_name, "bbox": [x, y, x + w, y + h], "iscrowd": crowd}, scratch
            )
        except RecordError as error:
            by_image.failed.setdefault(image_id, f"{where}: {error}")
            continue
        if box is not None:
            by_image.boxes.setdefault(image_id, []).append(box)
    entries += by_image.items(
        data["images"],
        file_name=name,
        dataset=dataset,
        labels=batch.labels,
        records="annotation",
    )
    batch.entries = entries
    return batch
