"""The export writers: items in, files out, one item at a time.

**JSONL** is autotag's own import format (``indexer/importer.py``): one item per line with
``item_id``, ``dataset``, ``uri``, ``width``, ``height``, ``uploaded_at``, ``metadata`` and the
predictions' ``label``, ``score`` (as stored, signed), ``model`` and, for objects, ``bbox``.
Nothing else is written, so ``autotag import FILE --training-set T`` reads it back as it is.

**COCO** is a bundle of two files:

- ``annotations.json``, a COCO dataset: ``info`` (the export's statement), ``images`` (``id``,
  ``file_name`` = the item id, ``width``, ``height``, ``autotag_uri``), ``annotations`` (``bbox``
  ``[x, y, w, h]``, ``area``, ``iscrowd``, ``score``, and ``autotag``: prediction id, training
  set, status) and ``categories`` (ids by first appearance, ``supercategory`` the label's first
  ``_`` part);
- ``results.json``, the same detections as COCO results (``image_id``, ``category_id``,
  ``bbox``, ``score``): what ``autotag import results.json --coco-images annotations.json``
  and pycocotools' ``loadRes`` read.

Scores are probabilities by default: ``p = (s + 1) / 2`` of the stored score ``s`` at the
index's float32 precision, which the importer's default (``2p - 1``) maps back exactly for every
``|s| >= 2**-29``; ``score_scale=signed`` writes ``s`` as stored. Boxes are written from their
float32 values too, so ``x + w`` gives back the stored ``x2``. Image-level predictions have no
place in COCO detection files and are left out (JSONL keeps them).

**YOLO** (Ultralytics' detection layout) is a bundle: ``images.txt`` (one path per item,
``./images/<item id>``), ``labels/<item id without extension>.txt`` (``class cx cy w h``,
normalised to the image size and clipped to [0, 1]), ``classes.txt`` (line ``i`` names class
``i``), ``data.yaml``, and ``sources.tsv`` (each image path and its ``uri``, to fetch or link
the images). Items without a width and height cannot be normalised and are skipped; two items
whose ids differ only in their extension would share a label file, so the second is skipped.

Every bundle ends with ``export.json``: the statement (format, content, query, sampling...) and
the counts. JSONL carries its statement beside the file (an HTTP header, or the command line's
``FILE.export.json``): a line of it would not be an item.
"""

from __future__ import annotations

import sqlite3
import struct
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, Protocol, TypeGuard

import orjson

from export.content import selected
from export.spec import ExportFormat, ExportSpec, ScoreScale
from export.zipstream import ZipStream
from store import schema as f
from store.clock import utc_iso
from store.schema import PredictionKind

MANIFEST: Final = "export.json"
_JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
# Item fields the JSONL importer reads (indexer/importer.py ITEM_FIELDS).
JSONL_ITEM_FIELDS: Final = (
    f.ITEM_ID,
    f.DATASET,
    f.URI,
    f.WIDTH,
    f.HEIGHT,
    f.UPLOADED_AT,
    f.METADATA,
)
_SIDES: Final = ("x1", "y1", "x2", "y2")


def float32(value: float) -> float:
    """``value`` as the index holds it (a 32-bit float), as a Python float."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def probability(score: float) -> float:
    """The probability ``p`` with ``2p - 1`` = ``score`` at float32 precision.

    ``float32(score) + 1`` is exact in double precision when ``|score| >= 2**-29``, and halving
    and doubling are exact, so the importer's ``2p - 1`` gives back ``float32(score)``.
    """
    return (float32(score) + 1.0) / 2.0


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


_FOUR_FLOAT32: Final = struct.Struct("<4f")


def _box(prediction: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The stored box as float32 corners ``x1, y1, x2, y2`` (ordered), or ``None``."""
    box = prediction.get(f.PRED_BBOX)
    if not isinstance(box, Mapping):
        return None
    try:
        x1, y1, x2, y2 = _FOUR_FLOAT32.unpack(_FOUR_FLOAT32.pack(*(box[s] for s in _SIDES)))
    except (KeyError, TypeError, struct.error):  # a missing or non-numeric corner
        return None
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


class Bundle(Protocol):
    """Where a multi-file export goes: a ZIP stream or a folder. Members one at a time."""

    def add(self, name: str, data: bytes) -> None: ...

    def open(self, name: str) -> Writable: ...

    def closing(self) -> Iterator[None]:
        """Complete the bundle, in steps (see ``ZipStream.closing``)."""
        ...


class Writable(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def _copy(target: Writable, source: IO[bytes]) -> Iterator[None]:
    """Append a spooled file, read from its start, to ``target``, a step per mebibyte."""
    source.seek(0)
    while chunk := source.read(1 << 20):
        target.write(chunk)
        yield


class ZipBundle:
    """Members of a ZIP written to ``out`` as they come."""

    def __init__(self, out: Callable[[bytes], object]) -> None:
        self.archive = ZipStream(out)

    def add(self, name: str, data: bytes) -> None:
        # Deflating a few hundred bytes costs more than it saves (YOLO label files).
        self.archive.add(name, data, compress=len(data) >= 512)

    def open(self, name: str) -> Writable:
        return self.archive.open(name)

    def closing(self) -> Iterator[None]:
        return self.archive.closing()


class FolderBundle:
    """Members as files under ``root`` (created)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, name: str, data: bytes) -> None:
        self._path(name).write_bytes(data)

    def open(self, name: str) -> Writable:
        return self._path(name).open("wb")  # type: ignore[return-value]

    def closing(self) -> Iterator[None]:
        yield


class Writer(ABC):
    """Takes items, writes them; :meth:`finish` completes the output and returns the manifest."""

    def __init__(self, spec: ExportSpec) -> None:
        self.spec = spec
        self.items = 0
        self.predictions: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        # The manifest, once finished.
        self.result: dict[str, Any] = {}

    @abstractmethod
    def add(self, item: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def finishing(self) -> Iterator[None]:
        """Complete the output in steps; between steps the caller may hand on what was
        written (spooled parts are copied a mebibyte at a time). Sets :attr:`result`."""

    def finish(self) -> dict[str, Any]:
        """Complete the output at once; the manifest."""
        for _ in self.finishing():
            pass
        return self.result

    def manifest(self) -> dict[str, Any]:
        return {
            **self.spec.statement(),
            "exported_at": utc_iso(),
            "items": self.items,
            "predictions": {kind.value: self.predictions[kind.value] for kind in PredictionKind},
            "skipped": dict(sorted(self.skipped.items())),
        }

    def _chosen(self, item: Mapping[str, Any]) -> dict[PredictionKind, list[Mapping[str, Any]]]:
        return selected(item, self.spec.content, self.spec.training_set)


class JsonlWriter(Writer):
    def __init__(self, spec: ExportSpec, out: Callable[[bytes], object]) -> None:
        super().__init__(spec)
        self.out = out

    def add(self, item: Mapping[str, Any]) -> None:
        record = {k: item[k] for k in JSONL_ITEM_FIELDS if item.get(k) is not None}
        for kind, predictions in self._chosen(item).items():
            written = []
            for prediction in predictions:
                score = prediction.get(f.PRED_SCORE)
                if not _number(score):
                    self.skipped["predictions without a score"] += 1
                    continue
                out: dict[str, Any] = {f.PRED_LABEL: prediction[f.PRED_LABEL], f.PRED_SCORE: score}
                if prediction.get(f.PRED_MODEL) is not None:
                    out[f.PRED_MODEL] = prediction[f.PRED_MODEL]
                if kind is PredictionKind.OBJECT:
                    box = prediction.get(f.PRED_BBOX)
                    if not isinstance(box, Mapping):
                        self.skipped["object predictions without a box"] += 1
                        continue
                    out[f.PRED_BBOX] = {side: box.get(side) for side in _SIDES}
                written.append(out)
            record[kind.path] = written
            self.predictions[kind.value] += len(written)
        self.out(orjson.dumps(record, option=_JSON_OPTIONS) + b"\n")
        self.items += 1

    def finishing(self) -> Iterator[None]:
        self.result = self.manifest()
        yield


class _Spool:
    """A JSON array written element by element to a temporary file (disk, not memory)."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.count = 0

    def append(self, value: Any) -> None:
        self.extend([orjson.dumps(value)])

    def extend(self, encoded: list[bytes]) -> None:
        """Elements already JSON-encoded."""
        self.file.write((b",\n" if self.count else b"\n") + b",\n".join(encoded))
        self.count += len(encoded)

    def close(self) -> None:
        self.file.close()


class CocoWriter(Writer):
    def __init__(self, spec: ExportSpec, bundle: Bundle) -> None:
        super().__init__(spec)
        self.bundle = bundle
        self.categories: dict[str, int] = {}
        self.images = _Spool()
        self.results = _Spool()
        self.annotations = bundle.open("annotations.json")
        info = {
            "description": "autotag export",
            "version": "1",
            "date_created": utc_iso(),
            "autotag": spec.statement(),
        }
        head = b'{"info": ' + orjson.dumps(info) + b', "licenses": [], "annotations": ['
        self.annotations.write(head)
        self.annotation_count = 0

    def _score(self, score: float) -> float:
        if self.spec.score_scale is ScoreScale.PROBABILITY:
            return probability(score)
        return score

    def add(self, item: Mapping[str, Any]) -> None:
        self.items += 1
        image_id = self.items
        image: dict[str, Any] = {"id": image_id, "file_name": str(item[f.ITEM_ID])}
        for side in (f.WIDTH, f.HEIGHT):
            if _number(item.get(side)):
                image[side] = item[side]
        if item.get(f.URI) is not None:
            image["autotag_uri"] = item[f.URI]
        self.images.append(image)
        chosen = self._chosen(item)
        if chosen[PredictionKind.IMAGE]:
            self.skipped["image predictions (no place in COCO detections)"] += len(
                chosen[PredictionKind.IMAGE]
            )
        annotations: list[bytes] = []
        results: list[bytes] = []
        for prediction in chosen[PredictionKind.OBJECT]:
            box = _box(prediction)
            score = prediction.get(f.PRED_SCORE)
            if box is None:
                self.skipped["object predictions without a box"] += 1
                continue
            if not _number(score):
                self.skipped["predictions without a score"] += 1
                continue
            label = str(prediction[f.PRED_LABEL])
            category = self.categories.setdefault(label, len(self.categories) + 1)
            x1, y1, x2, y2 = box
            bbox = [x1, y1, x2 - x1, y2 - y1]
            written = self._score(float(score))
            self.annotation_count += 1
            annotation = {
                "id": self.annotation_count,
                "image_id": image_id,
                "category_id": category,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
                "score": written,
                "autotag": {
                    "id": prediction.get(f.PRED_ID),
                    "training_set": prediction.get(f.PRED_TRAINING_SET),
                    "status": prediction.get(f.PRED_STATUS),
                },
            }
            annotations.append(orjson.dumps(annotation))
            results.append(
                orjson.dumps(
                    {"image_id": image_id, "category_id": category, "bbox": bbox, "score": written}
                )
            )
        if annotations:
            # One write per item: the ZIP member compresses each write.
            lead = b",\n" if self.annotation_count > len(annotations) else b"\n"
            self.annotations.write(lead + b",\n".join(annotations))
            self.results.extend(results)
            self.predictions[PredictionKind.OBJECT.value] += len(annotations)

    def finishing(self) -> Iterator[None]:
        categories = [
            {"id": number, "name": label, "supercategory": label.split("_", 1)[0]}
            for label, number in self.categories.items()
        ]
        self.annotations.write(b'\n], "images": [')
        yield from _copy(self.annotations, self.images.file)
        self.annotations.write(b'\n], "categories": ' + orjson.dumps(categories) + b"}\n")
        self.annotations.close()
        self.images.close()
        results = self.bundle.open("results.json")
        results.write(b"[")
        yield from _copy(results, self.results.file)
        results.write(b"\n]\n")
        results.close()
        self.results.close()
        manifest = self.manifest()
        manifest["categories"] = len(categories)
        self.bundle.add(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        yield from self.bundle.closing()
        self.result = manifest


def _label_path(item_id: str) -> str:
    """``labels/<item id without its extension>.txt``, as Ultralytics finds them."""
    stem = item_id.lstrip("/")
    name = stem.rsplit("/", 1)[-1]
    if "." in name.lstrip("."):
        stem = stem[: stem.rfind(".")]
    return f"labels/{stem}.txt"


class _PathSet:
    """The label paths written so far, in a temporary SQLite file: an exact check whose memory
    does not grow with the export (a Python set of a million paths is a hundred MiB)."""

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="autotag-export-")
        self.db = sqlite3.connect(Path(self.folder.name) / "paths.db", isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -4096"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE paths (path TEXT PRIMARY KEY) WITHOUT ROWID")
        self.db.execute("BEGIN")
        self.pending = 0

    def add(self, path: str) -> bool:
        """``False`` if ``path`` was already there."""
        try:
            self.db.execute("INSERT INTO paths VALUES (?)", (path,))
        except sqlite3.IntegrityError:
            return False
        self.pending += 1
        if self.pending >= 10_000:  # a transaction per batch, not per row
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")
            self.pending = 0
        return True

    def close(self) -> None:
        self.db.close()
        self.folder.cleanup()


class YoloWriter(Writer):
    def __init__(self, spec: ExportSpec, bundle: Bundle) -> None:
        super().__init__(spec)
        self.bundle = bundle
        self.classes: dict[str, int] = {}
        self.images: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.sources: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.seen = _PathSet()

    def add(self, item: Mapping[str, Any]) -> None:
        width, height = item.get(f.WIDTH), item.get(f.HEIGHT)
        if not (_number(width) and _number(height)) or width <= 0 or height <= 0:
            self.skipped["items without width and height"] += 1
            return
        item_id = str(item[f.ITEM_ID]).lstrip("/")
        label_path = _label_path(item_id)
        if not self.seen.add(label_path):
            self.skipped["items whose label file another item already has"] += 1
            return
        lines = []
        chosen = self._chosen(item)
        if chosen[PredictionKind.IMAGE]:
            self.skipped["image predictions (no place in YOLO detections)"] += len(
                chosen[PredictionKind.IMAGE]
            )
        for prediction in chosen[PredictionKind.OBJECT]:
            box = _box(prediction)
            if box is None:
                self.skipped["object predictions without a box"] += 1
                continue
            label = str(prediction[f.PRED_LABEL])
            number = self.classes.setdefault(label, len(self.classes))
            x1, y1, x2, y2 = (
                min(max(value / size, 0.0), 1.0)
                for value, size in zip(box, (width, height, width, height), strict=True)
            )
            lines.append(
                f"{number} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n"
            )
        self.bundle.add(label_path, "".join(lines).encode())
        image_path = f"./images/{item_id}"
        self.images.write(f"{image_path}\n".encode())
        uri = item.get(f.URI)
        self.sources.write(f"{image_path}\t{'' if uri is None else uri}\n".encode())
        self.predictions[PredictionKind.OBJECT.value] += len(lines)
        self.items += 1

    def finishing(self) -> Iterator[None]:
        self.seen.close()
        for name, spool in (("images.txt", self.images), ("sources.tsv", self.sources)):
            member = self.bundle.open(name)
            yield from _copy(member, spool)
            member.close()
            spool.close()
        names = list(self.classes)
        self.bundle.add("classes.txt", "".join(f"{name}\n" for name in names).encode())
        yaml = [
            "# autotag export (see export.json); Ultralytics YOLO detection layout",
            "path: .",
            "train: images.txt",
            "val: images.txt",
            f"nc: {len(names)}",
            "names:",
            # JSON strings are YAML scalars: any label is written safely.
            *(f"  {number}: {orjson.dumps(name).decode()}" for number, name in enumerate(names)),
        ]
        self.bundle.add("data.yaml", ("\n".join(yaml) + "\n").encode())
        manifest = self.manifest()
        manifest["classes"] = len(names)
        self.bundle.add(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        yield from self.bundle.closing()
        self.result = manifest


def make_writer(
    spec: ExportSpec, *, out: Callable[[bytes], object] | None = None, folder: Path | None = None
) -> Writer:
    """The writer for ``spec``: into ``out`` (JSONL lines, or a ZIP for the bundle formats)
    or, for a bundle format, into ``folder``."""
    if spec.format is ExportFormat.JSONL:
        if out is None:
            raise ValueError("JSONL is one stream: give `out`")
        return JsonlWriter(spec, out)
    bundle: Bundle
    if folder is not None:
        bundle = FolderBundle(folder)
    elif out is not None:
        bundle = ZipBundle(out)
    else:
        raise ValueError("give `out` (a ZIP) or `folder`")
    if spec.format is ExportFormat.COCO:
        return CocoWriter(spec, bundle)
    return YoloWriter(spec, bundle)
