"""``autotag import``: predictions made elsewhere, written through the same writer as ``index``.

Two formats:

- **JSONL**, one item per line::

      {"item_id": "cam1/0001.png", "dataset": "cam1", "uri": "...", "width": 640, "height": 480,
       "metadata": {...},
       "image_predictions": [{"label": "weather_rain", "score": 0.8, "model": "m"}],
       "object_predictions": [{"label": "car", "score": 0.9,
                               "bbox": {"x1": 1, "y1": 2, "x2": 30, "y2": 40}}]}

  ``bbox`` may also be ``[x1, y1, x2, y2]``. Labels are stored as given.
- **COCO detection results** (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``)
  with the COCO images file (``images`` with ``id``/``file_name``/``width``/``height`` and
  ``categories`` with ``id``/``name``). Item ids follow the folder rule of ``index``
  (``DATASET/file_name``); category names map to taxonomy labels through the taxonomy's
  ``object_classes`` (names that are already taxonomy labels are kept, others dropped). Every
  listed image becomes an item, with or without detections.

Bad lines (not JSON, no id, unknown fields, duplicate ids) are failures of their own; the rest
of the file is still imported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from indexer.report import Failure, FailureLog, RunSummary, Writer
from indexer.sources import item_id_for
from indexer.taxonomy import Taxonomy
from store import schema as f
from store.writer import ItemPredictions

ITEM_FIELDS: Final = frozenset(
    {f.ITEM_ID, f.DATASET, f.URI, f.WIDTH, f.HEIGHT, f.UPLOADED_AT, f.METADATA}
)
PREDICTION_FIELDS: Final = frozenset(
    {f.PRED_ID, f.PRED_LABEL, f.PRED_SCORE, f.PRED_MODEL, f.PRED_CREATED_AT}
)
_BOX_SIDES: Final = ("x1", "y1", "x2", "y2")


class RecordError(ValueError):
    """A record that cannot be imported; the message says why."""


@dataclass
class ImportBatch:
    """What was read: entries to write, per-record problems, predictions deliberately dropped."""

    entries: Iterable[ItemPredictions | Failure]
    dropped: int = 0
    notes: list[str] = field(default_factory=list)


# --- JSONL -------------------------------------------------------------------------------


def read_jsonl(path: Path, *, dataset: str | None = None, model: str = "import") -> ImportBatch:
    """Stream the items of a predictions JSONL file (see the module docstring)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return ImportBatch(_jsonl_entries(path, dataset, model))


def _jsonl_entries(
    path: Path, dataset: str | None, model: str
) -> Iterator[ItemPredictions | Failure]:
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                record = json.loads(line)
                entry = parse_record(record, dataset=dataset, model=model)
            except json.JSONDecodeError as error:
                yield Failure(None, None, "source", f"{where}: not JSON ({error.msg})")
                continue
            except RecordError as error:
                item_id = record.get(f.ITEM_ID) if isinstance(record, dict) else None
                yield Failure(_text(item_id), None, "source", f"{where}: {error}")
                continue
            if entry.item_id in seen:
                yield Failure(entry.item_id, None, "source", f"{where}: duplicate item id")
                continue
            seen.add(entry.item_id)
            yield entry


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def parse_record(record: Any, *, dataset: str | None, model: str) -> ItemPredictions:
    """One JSONL record -> the writer's input; raises :class:`RecordError` if unusable."""
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    item_id = _text(record.get(f.ITEM_ID))
    if not item_id:
        raise RecordError(f"no {f.ITEM_ID}")
    unknown = set(record) - ITEM_FIELDS - {f.IMAGE_PREDICTIONS, f.OBJECT_PREDICTIONS}
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    item = {k: v for k, v in record.items() if k in ITEM_FIELDS}
    item[f.ITEM_ID] = item_id
    if dataset is not None:
        item.setdefault(f.DATASET, dataset)
    image = [_prediction(p, model, with_bbox=False) for p in _list(record, f.IMAGE_PREDICTIONS)]
    objects = [_prediction(p, model, with_bbox=True) for p in _list(record, f.OBJECT_PREDICTIONS)]
    return ItemPredictions(item, image, objects)


def _list(record: Mapping[str, Any], key: str) -> list[Any]:
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{key} is not a list")
    return value


def _prediction(raw: Any, model: str, *, with_bbox: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError("a prediction is not an object")
    allowed = PREDICTION_FIELDS | ({f.PRED_BBOX} if with_bbox else set())
    unknown = set(raw) - allowed
    if unknown:
        raise RecordError(f"unknown prediction field(s): {', '.join(sorted(unknown))}")
    out = dict(raw)
    out.setdefault(f.PRED_MODEL, model)
    if with_bbox:
        out[f.PRED_BBOX] = _bbox(raw.get(f.PRED_BBOX))
    return out


def _bbox(raw: Any) -> dict[str, float]:
    if isinstance(raw, list) and len(raw) == 4:
        values = raw
    elif isinstance(raw, dict) and set(raw) == set(_BOX_SIDES):
        values = [raw[side] for side in _BOX_SIDES]
    else:
        raise RecordError("bbox must be {x1, y1, x2, y2} or [x1, y1, x2, y2]")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise RecordError("bbox coordinates must be numbers")
    return dict(zip(_BOX_SIDES, (float(v) for v in values), strict=True))


# --- COCO --------------------------------------------------------------------------------


def read_coco(
    results_path: Path,
    images_path: Path,
    *,
    taxonomy: Taxonomy,
    dataset: str | None = None,
    model: str = "coco-import",
    score_threshold: float = 0.0,
) -> ImportBatch:
    """COCO detection results + the COCO images file -> one entry per listed image."""
    results = _load_json(results_path)
    images_file = _load_json(images_path)
    if not isinstance(results, list):
        raise ValueError(f"{results_path}: COCO results must be a JSON list")
    if not isinstance(images_file, dict) or not isinstance(images_file.get("images"), list):
        raise ValueError(f"{images_path}: no `images` list (a COCO images/annotations file)")
    categories = {
        c["id"]: str(c["name"])
        for c in images_file.get("categories") or ()
        if isinstance(c, dict) and "id" in c and "name" in c
    }
    targets = set(taxonomy.object_labels)

    def label_of(name: str) -> str | None:
        mapped = taxonomy.object_classes.get(name)
        return mapped if mapped is not None else (name if name in targets else None)

    entries: list[ItemPredictions | Failure] = []
    by_image: dict[Any, list[dict[str, Any]]] = {}
    dropped = 0
    for number, result in enumerate(results):
        try:
            image_id = result["image_id"]
            name = categories.get(result["category_id"])
            score = float(result["score"])
            x, y, w, h = (float(v) for v in result["bbox"])
        except (KeyError, TypeError, ValueError) as error:
            entries.append(
                Failure(None, None, "source", f"{results_path.name}[{number}]: bad result {error}")
            )
            continue
        label = label_of(name) if name is not None else None
        if label is None or score < score_threshold:
            dropped += 1
            continue
        prediction = {
            f.PRED_LABEL: label,
            f.PRED_SCORE: score,
            f.PRED_MODEL: model,
            f.PRED_BBOX: {"x1": x, "y1": y, "x2": x + w, "y2": y + h},
        }
        by_image.setdefault(image_id, []).append(prediction)
    seen: set[str] = set()
    listed: set[Any] = set()
    for image in images_file["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            entries.append(Failure(None, None, "source", f"{images_path.name}: bad image entry"))
            continue
        file_name = str(image["file_name"])
        item_id = item_id_for(dataset, file_name)
        if item_id in seen:
            entries.append(Failure(item_id, file_name, "source", "duplicate item id"))
            continue
        seen.add(item_id)
        listed.add(image["id"])
        item: dict[str, Any] = {f.ITEM_ID: item_id, f.URI: file_name}
        if dataset is not None:
            item[f.DATASET] = dataset
        for side in (f.WIDTH, f.HEIGHT):
            if isinstance(image.get(side), int):
                item[side] = image[side]
        entries.append(ItemPredictions(item, (), by_image.get(image["id"], [])))
    for image_id, predictions in by_image.items():
        if image_id not in listed:
            reason = f"{len(predictions)} result(s) for image id {image_id} not in the image list"
            entries.append(Failure(None, None, "source", reason))
    batch = ImportBatch(entries, dropped=dropped)
    if dropped:
        batch.notes.append(
            f"{dropped} detection(s) dropped: below the score threshold or a category "
            "the taxonomy does not map"
        )
    return batch


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from error


# --- writing -----------------------------------------------------------------------------


def run_import(
    batch: ImportBatch,
    writer: Writer,
    *,
    failure_log: FailureLog | None = None,
    chunk: int = 500,
) -> RunSummary:
    """Write the batch's entries in chunks; skip items already tagged unless the writer forces."""
    started = time.perf_counter()
    summary = RunSummary()

    def fail(failure: Failure) -> None:
        summary.failures.append(failure)
        if failure_log is not None:
            failure_log.record(failure)

    pending: list[ItemPredictions] = []
    for entry in batch.entries:
        summary.seen += 1
        if isinstance(entry, Failure):
            fail(entry)
            continue
        pending.append(entry)
        if len(pending) >= chunk:
            if not _write(pending, writer, summary, fail):
                break
            pending = []
    else:
        if pending:
            _write(pending, writer, summary, fail)
    summary.failed = len(summary.failures)
    summary.seconds = time.perf_counter() - started
    return summary


def _write(
    entries: list[ItemPredictions],
    writer: Writer,
    summary: RunSummary,
    fail: Callable[[Failure], None],
) -> bool:
    """Write one chunk; False (and the chunk failed) when Elasticsearch could not be used."""
    try:
        if not writer.force:
            done = writer.already_tagged([e.item_id for e in entries])
            summary.skipped += len(done)
            entries = [e for e in entries if e.item_id not in done]
        result = writer.write(entries) if entries else None
    except Exception as error:
        summary.aborted = f"writing failed: {type(error).__name__}: {error}"
        for e in entries:
            uri = e.item.get(f.URI)
            reason = summary.aborted
            fail(Failure(e.item_id, str(uri) if uri is not None else None, "write", reason))
        return False
    if result is None:
        return True
    summary.count_writes(result)
    uris = {e.item_id: e.item.get(f.URI) for e in entries}
    for item_id, reason in result.failed:
        uri = uris.get(item_id)
        fail(Failure(item_id, str(uri) if uri is not None else None, "write", reason))
    return True
