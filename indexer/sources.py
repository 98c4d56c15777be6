"""Where the images of a run come from: a folder (recursive) or a manifest, and a slice of it.

A source yields :class:`SourceItem` values with *stable* item ids, so that a rerun, an
incremental run over new uploads and an import of predictions made elsewhere all address the
same documents:

- a manifest (``.jsonl`` or ``.csv``) names its ids in ``item_id``;
- a folder's ids are ``<dataset>/<path relative to the folder>`` (POSIX separators), the
  dataset defaulting to the folder's name. :func:`item_id_for` is that rule, shared with imports.

Problems in the input (a missing file, a duplicate id, a malformed manifest row) are collected
as :class:`SourceProblem` values next to the items; scanning never raises on bad rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

from store import schema as f
from store.clock import utc_iso

IMAGE_EXTENSIONS: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
MANIFEST_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".csv"})
# Manifest columns that are item fields; any other CSV column is metadata.
_ITEM_COLUMNS: Final = (f.ITEM_ID, f.URI, f.DATASET, f.WIDTH, f.HEIGHT, f.UPLOADED_AT, f.METADATA)


@dataclass(frozen=True)
class SourceItem:
    """One image to tag: its stable id, where it lives, and the item fields to store."""

    item_id: str
    uri: str
    path: Path | None
    dataset: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    uploaded_at: str | None = None

    def fields(self) -> dict[str, Any]:
        """The item fields (without predictions) as the writer expects them."""
        out: dict[str, Any] = {f.ITEM_ID: self.item_id, f.URI: self.uri}
        if self.dataset is not None:
            out[f.DATASET] = self.dataset
        if self.metadata:
            out[f.METADATA] = dict(self.metadata)
        if self.uploaded_at is not None:
            out[f.UPLOADED_AT] = self.uploaded_at
        return out


@dataclass(frozen=True)
class SourceProblem:
    """An input entry that cannot be tagged, and why."""

    reason: str
    item_id: str | None = None
    uri: str | None = None


@dataclass
class Source:
    """The items of a run and the problems met while listing them."""

    items: list[SourceItem] = field(default_factory=list)
    problems: list[SourceProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class SliceFilter:
    """A slice of a dataset: items of the given datasets whose metadata match every condition.

    A condition ``key=value`` matches when the metadata value at ``key`` (dotted for nested
    objects) equals ``value`` as text, or is a list containing it. An empty filter keeps all.
    """

    datasets: frozenset[str] = frozenset()
    conditions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, datasets: Iterable[str] = (), conditions: Iterable[str] = ()) -> SliceFilter:
        """Build a filter from ``--dataset`` names and ``--filter KEY=VALUE`` strings.

        ``dataset=NAME`` among the conditions is the same as a ``--dataset``; a ``metadata.``
        prefix on a key is optional.
        """
        names = set(datasets)
        parsed: list[tuple[str, str]] = []
        for text in conditions:
            key, sep, value = text.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"filter {text!r} is not KEY=VALUE")
            if key == f.DATASET:
                names.add(value.strip())
                continue
            key = key.removeprefix(f"{f.METADATA}.")
            parsed.append((key, value.strip()))
        return cls(frozenset(names), tuple(parsed))

    def matches(self, item: SourceItem) -> bool:
        if self.datasets and item.dataset not in self.datasets:
            return False
        return all(_metadata_matches(item.metadata, k, v) for k, v in self.conditions)


def _metadata_matches(metadata: Mapping[str, Any], key: str, expected: str) -> bool:
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    values = value if isinstance(value, list) else [value]
    return any(_as_text(v) == expected for v in values)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def item_id_for(dataset: str | None, relative_path: str) -> str:
    """The stable id of an image at ``relative_path`` (POSIX) under a dataset's root folder."""
    relative_path = relative_path.lstrip("/")
    return f"{dataset}/{relative_path}" if dataset else relative_path


def _mtime(path: Path) -> str | None:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return utc_iso(datetime.fromtimestamp(stamp, UTC))


def scan_folder(
    root: Path, *, dataset: str | None = None, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> Source:
    """Every image file under ``root`` (recursive, sorted, hidden entries skipped)."""
    root = root.resolve()
    name = dataset or root.name
    wanted = {e.lower() for e in extensions}
    source = Source()
    for path in sorted(_walk(root)):
        if path.suffix.lower() not in wanted:
            continue
        relative = path.relative_to(root).as_posix()
        source.items.append(
            SourceItem(
                item_id=item_id_for(name, relative),
                uri=path.as_uri(),
                path=path,
                dataset=name,
                uploaded_at=_mtime(path),
            )
        )
    return source


def _walk(root: Path) -> Iterator[Path]:
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def resolve_uri(uri: str, base: Path) -> Path | None:
    """The local file a manifest ``uri`` names (relative to ``base``), or None if not local."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, not a scheme
        return None
    path = Path(uri).expanduser()
    return path if path.is_absolute() else base / path


def read_manifest(path: Path) -> Source:
    """Items listed in a JSONL or CSV manifest; relative URIs are relative to its folder."""
    csv_file = path.suffix.lower() == ".csv"
    rows = _csv_rows(path) if csv_file else _jsonl_rows(path)
    base = path.resolve().parent
    source = Source()
    for line, row in rows:
        where = f"{path.name}:{line}"
        if isinstance(row, str):
            source.problems.append(SourceProblem(f"{where}: {row}"))
            continue
        item = _manifest_item(row, base)
        if isinstance(item, str):
            source.problems.append(
                SourceProblem(f"{where}: {item}", _text_or_none(row.get(f.ITEM_ID)))
            )
        else:
            source.items.append(item)
    return source


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, f"not JSON ({error.msg})"
                continue
            yield number, row if isinstance(row, dict) else "not a JSON object"


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with path.open(encoding="utf-8", newline="") as lines:
        reader = csv.DictReader(lines)
        for row in reader:
            number = reader.line_num
            if None in row:
                yield number, "more cells than header columns"
                continue
            cleaned = {
                k.strip(): v for k, v in row.items() if k is not None and v not in (None, "")
            }
            metadata: dict[str, Any] = {}
            if f.METADATA in cleaned:
                try:
                    loaded = json.loads(str(cleaned.pop(f.METADATA)))
                except json.JSONDecodeError:
                    yield number, "metadata column is not a JSON object"
                    continue
                if not isinstance(loaded, dict):
                    yield number, "metadata column is not a JSON object"
                    continue
                metadata.update(loaded)
            for key in [k for k in cleaned if k not in _ITEM_COLUMNS]:
                metadata[key] = cleaned.pop(key)
            if metadata:
                cleaned[f.METADATA] = metadata
            yield number, cleaned


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _manifest_item(row: Mapping[str, Any], base: Path) -> SourceItem | str:
    item_id = row.get(f.ITEM_ID)
    uri = row.get(f.URI)
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip():
        return f"no {f.ITEM_ID}"
    if not isinstance(uri, str) or not uri.strip():
        return f"item {item_id!r} has no {f.URI}"
    dataset = row.get(f.DATASET)
    if dataset is not None and not isinstance(dataset, str):
        return f"item {item_id!r}: {f.DATASET} is not a string"
    metadata = row.get(f.METADATA) or {}
    if not isinstance(metadata, dict):
        return f"item {item_id!r}: {f.METADATA} is not an object"
    uploaded_at = row.get(f.UPLOADED_AT)
    return SourceItem(
        item_id=item_id.strip(),
        uri=uri.strip(),
        path=resolve_uri(uri.strip(), base),
        dataset=dataset,
        metadata=metadata,
        uploaded_at=uploaded_at if isinstance(uploaded_at, str) else None,
    )


def open_source(
    location: Path, *, slice_filter: SliceFilter | None = None, dataset: str | None = None
) -> Source:
    """List the items at ``location`` (folder or manifest), keep the slice, check them.

    ``dataset`` names a folder's dataset (default: the folder's name). The result holds the
    items to tag, each id once and each file present; the rest are problems: duplicate ids
    (the first occurrence is kept), missing files, non-local URIs.
    """
    if location.is_dir():
        listed = scan_folder(location, dataset=dataset)
    elif location.is_file():
        listed = read_manifest(location)
    else:
        raise FileNotFoundError(f"no folder or manifest at {location}")
    if slice_filter is not None:
        listed.items = [item for item in listed.items if slice_filter.matches(item)]
    return check_items(listed.items, listed.problems)


def check_items(items: Sequence[SourceItem], problems: Sequence[SourceProblem] = ()) -> Source:
    """Drop (and report) duplicate ids, missing files and URIs that are not local files."""
    checked = Source(problems=list(problems))
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            checked.problems.append(
                SourceProblem(f"duplicate item id (uri {item.uri})", item.item_id, item.uri)
            )
            continue
        seen.add(item.item_id)
        if item.path is None:
            checked.problems.append(
                SourceProblem("not a local file (unsupported URI scheme)", item.item_id, item.uri)
            )
        elif not item.path.is_file():
            checked.problems.append(SourceProblem("file not found", item.item_id, item.uri))
        else:
            checked.items.append(item)
    return checked
