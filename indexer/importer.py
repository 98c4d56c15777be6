"""``autotag import``: predictions made elsewhere, written through the same writer as ``index``.

Two formats:

- **JSONL**, one item per line::

      {"item_id": "cam1/0001.png", "dataset": "cam1", "uri": "...", "width": 640, "height": 480,
       "metadata": {...},
       "image_predictions": [{"label": "weather_rain", "score": 0.8, "model": "m"}],
       "object_predictions": [{"label": "car", "score": 0.9,
                               "bbox": {"x1": 1, "y1": 2, "x2": 30, "y2": 40}}]}

  ``bbox`` may also be ``[x1, y1, x2, y2]``.
- **COCO detection results** (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``)
  with the COCO images file (``images`` with ``id``/``file_name``/``width``/``height`` and
  ``categories`` with ``id``/``name``). Item ids follow the folder rule of ``index``
  (``DATASET/file_name``). Every listed image becomes an item, with or without detections.

**Labels.** Every label is normalised by :func:`indexer.taxonomy.normalise_label`
(``traffic light`` -> ``traffic_light``); object labels first go through the taxonomy's
``object_classes`` (COCO ``person`` -> ``pedestrian``). Labels the taxonomy does not know
(``dog``) are kept and counted as new, unless ``taxonomy_only`` drops them.

**Scores.** :class:`ScoreScale` says what the file's scores are: ``probability`` (in [0, 1],
stored as ``2p - 1`` so that 0.5, a coin flip, lands on 0 like CLIP's chance) or ``signed``
(in [-1, 1], stored as given). COCO results are probabilities, JSONL (autotag's own format)
is signed by default. A score outside the scale fails its item, with the reason.

Bad lines (not JSON, no id, unknown fields, duplicate ids, a bad score or label) are failures of
their own; the rest of the file is still imported.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from indexer import coco, score_scale
from indexer.report import Failure, FailureLog, RunSummary, Writer
from indexer.score_scale import DEFAULT_COCO_SCALE, DEFAULT_JSONL_SCALE, ScoreScale
from indexer.taxonomy import Taxonomy, load_taxonomy, normalise_label
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


def to_signed(score: Any, scale: ScoreScale) -> float:
    """:func:`indexer.score_scale.to_signed`, raising :class:`RecordError`."""
    try:
        return score_scale.to_signed(score, scale)
    except ValueError as error:
        raise RecordError(str(error)) from error


Kind = Literal["image", "object"]


@dataclass
class LabelPolicy:
    """Turns imported label names into stored labels and counts the ones the taxonomy lacks."""

    taxonomy: Taxonomy
    taxonomy_only: bool = False
    new: Counter[str] = field(default_factory=Counter)  # new label -> predictions kept
    dropped: int = 0  # predictions left out because of taxonomy_only

    def merge(self, other: LabelPolicy) -> None:
        """Add the counts of ``other`` (a scratch policy of one record)."""
        self.new.update(other.new)
        self.dropped += other.dropped

    def label(self, name: str, kind: Kind) -> str | None:
        """The stored label for ``name``, or ``None`` when ``taxonomy_only`` drops it."""
        if kind == "object":
            mapped = self.taxonomy.object_classes.get(name)
            if mapped is None:
                mapped = self.taxonomy.object_classes.get(normalise_label(name))
            known = self.taxonomy.object_labels
        else:
            mapped, known = None, self.taxonomy.image_labels
        label = mapped if mapped is not None else normalise_label(name)
        if not label:
            raise RecordError(f"label {name!r} has no letters or digits")
        if label in known:
            return label
        if self.taxonomy_only:
            self.dropped += 1
            return None
        self.new[label] += 1
        return label


@dataclass
class ImportBatch:
    """What was read: entries to write, per-record problems, predictions deliberately dropped.

    ``entries`` may be lazy: the counts are complete once it has been consumed (then
    :meth:`summary_notes` tells the whole story).
    """

    entries: Iterable[ItemPredictions | Failure]
    labels: LabelPolicy
    scale: ScoreScale
    below_threshold: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """Predictions deliberately not written: not in the taxonomy, or below the threshold."""
        return self.labels.dropped + self.below_threshold

    def summary_notes(self) -> list[str]:
        """Lines for the run's summary: scale used, new labels, what was dropped and why."""
        lines = [*self.notes]
        if self.scale is ScoreScale.PROBABILITY:
            lines.append("score scale: probability (p in [0, 1] stored as 2p - 1; 0.5 -> 0)")
        else:
            lines.append("score scale: signed (scores in [-1, 1] stored as given)")
        new = self.labels.new
        if new:
            shown = ", ".join(sorted(new)[:10]) + (", ..." if len(new) > 10 else "")
            lines.append(f"new labels (not in the taxonomy): {len(new)} ({shown})")
        else:
            lines.append("new labels (not in the taxonomy): 0")
        if self.labels.dropped:
            lines.append(
                f"{self.labels.dropped} prediction(s) dropped: label not in the taxonomy "
                "(--taxonomy-only)"
            )
        if self.below_threshold:
            lines.append(f"{self.below_threshold} detection(s) dropped: below the score threshold")
        return lines


# --- JSONL -------------------------------------------------------------------------------


def read_jsonl(
    path: Path,
    *,
    dataset: str | None = None,
    model: str = "import",
    taxonomy: Taxonomy | None = None,
    taxonomy_only: bool = False,
    score_scale: ScoreScale = DEFAULT_JSONL_SCALE,
) -> ImportBatch:
    """Stream the items of a predictions JSONL file (see the module docstring)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    labels = LabelPolicy(taxonomy or load_taxonomy(), taxonomy_only)
    batch = ImportBatch((), labels, score_scale)

    def parse(record: Any) -> ItemPredictions:
        return parse_record(
            record, dataset=dataset, model=model, labels=batch.labels, scale=batch.scale
        )

    batch.entries = jsonl_entries(path, parse)
    return batch


def jsonl_entries(
    path: Path, parse: Callable[[Any], ItemPredictions]
) -> Iterator[ItemPredictions | Failure]:
    """The entries of a JSONL file, one per non-blank line, read as it is consumed: what
    ``parse`` makes of the line's record, or the line's failure (not JSON, a
    :class:`RecordError`, an item id seen before)."""
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            record: Any = None
            try:
                record = json.loads(line)
                entry = parse(record)
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


def record_item(record: Any, dataset: str | None, others: Set[str]) -> dict[str, Any]:
    """The item fields of a JSONL record (``dataset`` where it names none); raises
    :class:`RecordError` for a record that is no object, has no id, or has fields that are
    neither item fields nor ``others``."""
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    item_id = _text(record.get(f.ITEM_ID))
    if not item_id:
        raise RecordError(f"no {f.ITEM_ID}")
    unknown = set(record) - ITEM_FIELDS - others
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    item = {k: v for k, v in record.items() if k in ITEM_FIELDS}
    item[f.ITEM_ID] = item_id
    if dataset is not None:
        item.setdefault(f.DATASET, dataset)
    return item


def parse_record(
    record: Any,
    *,
    dataset: str | None,
    model: str,
    labels: LabelPolicy | None = None,
    scale: ScoreScale = DEFAULT_JSONL_SCALE,
) -> ItemPredictions:
    """One JSONL record -> the writer's input; raises :class:`RecordError` if unusable.

    ``labels`` (default: the shipped taxonomy, foreign labels kept) counts new and dropped
    labels, only once the whole record has parsed.
    """
    item = record_item(record, dataset, {f.IMAGE_PREDICTIONS, f.OBJECT_PREDICTIONS})
    policy = labels or LabelPolicy(load_taxonomy())
    # a scratch policy: a record that fails half way must not count its labels
    scratch = LabelPolicy(policy.taxonomy, policy.taxonomy_only)
    found: dict[Kind, list[dict[str, Any]]] = {"image": [], "object": []}
    parts: tuple[tuple[Kind, str], ...] = (
        ("image", f.IMAGE_PREDICTIONS),
        ("object", f.OBJECT_PREDICTIONS),
    )
    for kind, key in parts:
        for raw in _list(record, key):
            prediction = _prediction(raw, model, kind, scratch, scale)
            if prediction is not None:
                found[kind].append(prediction)
    policy.merge(scratch)
    return ItemPredictions(item, found["image"], found["object"])


def _list(record: Mapping[str, Any], key: str) -> list[Any]:
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{key} is not a list")
    return value


def _prediction(
    raw: Any, model: str, kind: Kind, labels: LabelPolicy, scale: ScoreScale
) -> dict[str, Any] | None:
    """One prediction to store, or ``None`` when the label policy drops it."""
    if not isinstance(raw, dict):
        raise RecordError("a prediction is not an object")
    with_bbox = kind == "object"
    allowed = PREDICTION_FIELDS | ({f.PRED_BBOX} if with_bbox else set())
    unknown = set(raw) - allowed
    if unknown:
        raise RecordError(f"unknown prediction field(s): {', '.join(sorted(unknown))}")
    out = dict(raw)
    out.setdefault(f.PRED_MODEL, model)
    if with_bbox:
        out[f.PRED_BBOX] = _bbox(raw.get(f.PRED_BBOX))
    name = raw.get(f.PRED_LABEL)
    if not isinstance(name, str):
        raise RecordError(f"a prediction's label {name!r} is not text")
    label = labels.label(name, kind)
    if label is None:
        return None
    out[f.PRED_LABEL] = label
    out[f.PRED_SCORE] = to_signed(raw.get(f.PRED_SCORE), scale)
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
    taxonomy_only: bool = False,
    score_scale: ScoreScale = DEFAULT_COCO_SCALE,
) -> ImportBatch:
    """COCO detection results + the COCO images file -> one entry per listed image.

    ``score_threshold`` is on the file's own scale (a COCO probability by default).
    """
    results = _load_json(results_path)
    images_file = _load_json(images_path)
    if not isinstance(results, list):
        raise ValueError(f"{results_path}: COCO results must be a JSON list")
    if not isinstance(images_file, dict) or not isinstance(images_file.get("images"), list):
        raise ValueError(f"{images_path}: no `images` list (a COCO images/annotations file)")
    names = coco.categories(images_file)
    labels = LabelPolicy(taxonomy, taxonomy_only)
    batch = ImportBatch((), labels, score_scale)

    entries: list[ItemPredictions | Failure] = []
    by_image = coco.ByImage()  # a bad score or label fails the image's item
    for number, result in enumerate(results):
        where = f"{results_path.name}[{number}]"
        try:
            image_id = result["image_id"]
            category = result["category_id"]
            raw_score = result["score"]
            x, y, w, h = (float(v) for v in result["bbox"])
        except (KeyError, TypeError, ValueError) as error:
            entries.append(Failure(None, None, "source", f"{where}: bad result {error!r}"))
            continue
        name = names.get(category)
        if name is None:
            reason = f"{where}: category_id {category!r} is not in {images_path.name}'s categories"
            entries.append(Failure(None, None, "source", reason))
            continue
        try:
            score = to_signed(raw_score, score_scale)
            if float(raw_score) < score_threshold:  # on the file's own scale
                batch.below_threshold += 1
                continue
            # counted per image: an item that fails must not count its labels
            scratch = by_image.labels.setdefault(image_id, LabelPolicy(taxonomy, taxonomy_only))
            label = scratch.label(name, "object")
        except RecordError as error:
            by_image.failed.setdefault(image_id, f"{where}: {error}")
            continue
        if label is None:
            continue
        prediction = {
            f.PRED_LABEL: label,
            f.PRED_SCORE: score,
            f.PRED_MODEL: model,
            f.PRED_BBOX: {"x1": x, "y1": y, "x2": x + w, "y2": y + h},
        }
        by_image.boxes.setdefault(image_id, []).append(prediction)
    entries += by_image.items(
        images_file["images"],
        file_name=images_path.name,
        dataset=dataset,
        labels=labels,
        records="result",
    )
    batch.entries = entries
    return batch


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from error


# --- writing -----------------------------------------------------------------------------


class Batch(Protocol):
    """What :func:`run_import` writes: predictions (:class:`ImportBatch`) or ground truth."""

    @property
    def entries(self) -> Iterable[ItemPredictions | Failure]: ...


def run_import(
    batch: Batch,
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
