"""The folders whose images may be served, recorded next to the index that holds their items.

``autotag index`` records the folders it read (a folder source itself; for a manifest, the
folders holding its images) in a small index beside the item index, named by
:func:`roots_index_name` (``autotag-items-image-roots`` for the alias ``autotag-items``): one
document per folder, its id derived from the path and written with ``create``, so any number of
jobs may record at once and none loses another's folder (a mapping's ``_meta`` cannot promise
that: it is replaced whole on every update). It is named after the alias, not the versioned
index, so a new schema version behind the same alias keeps it.

The API serves an item's image only when the file, symlinks resolved, lies inside one of these
folders or one configured with ``AUTOTAG_IMAGE_ROOTS``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from store.clock import utc_iso

ROOTS_SUFFIX: Final = "-image-roots"
ROOT_FIELD: Final = "root"
# More folders than this are folded into their parent folders, deepest first.
MAX_ROOTS: Final = 1000
# Documents read back; more than MAX_ROOTS fold anyway.
READ_SIZE: Final = 10_000


def roots_index_name(index: str) -> str:
    """The index recording the image folders of the item index or alias ``index``."""
    return f"{index}{ROOTS_SUFFIX}"


def roots_index_body() -> dict[str, Any]:
    """Mappings and settings of a roots index: tiny, strict, one copy per node up to two."""
    return {
        "mappings": {
            "dynamic": "strict",
            "properties": {ROOT_FIELD: {"type": "keyword"}, "recorded_at": {"type": "date"}},
        },
        "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"},
    }


def normalise_roots(folders: Iterable[Path | str]) -> list[str]:
    """Absolute folders, symlinks resolved, without any that lies inside another; sorted."""
    resolved = sorted({os.path.realpath(os.path.abspath(os.fspath(p))) for p in folders})
    kept: list[str] = []
    for folder in resolved:
        # Sorted, a folder comes right after the folder that contains it.
        if kept and is_inside(folder, kept[-1]):
            continue
        kept.append(folder)
    while len(kept) > MAX_ROOTS:
        kept = normalise_roots(_fold_deepest(kept))
    return kept


def _fold_deepest(folders: list[str]) -> list[str]:
    deepest = max(folder.count(os.sep) for folder in folders)
    return [os.path.dirname(f) if f.count(os.sep) == deepest else f for f in folders]


def is_inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (both absolute and already resolved)."""
    if root == os.sep:
        return path.startswith(os.sep)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def folders_of_images(paths: Iterable[Path]) -> list[str]:
    """The folders to record for a manifest's images: their parent folders, nested ones folded."""
    return normalise_roots(path.parent for path in paths)


def roots_search_body() -> dict[str, Any]:
    return {"size": READ_SIZE, "_source": [ROOT_FIELD], "query": {"match_all": {}}}


def roots_in_answer(response: Mapping[str, Any]) -> list[str]:
    """The folders in the answer to :func:`roots_search_body`, nested ones folded."""
    hits = (response.get("hits") or {}).get("hits") or []
    found = [str(hit["_source"][ROOT_FIELD]) for hit in hits if hit.get("_source")]
    return normalise_roots(found) if found else []


def _doc_id(root: str) -> str:
    return hashlib.sha256(root.encode()).hexdigest()[:32]


def record_image_roots(client: Any, index: str, folders: Iterable[Path | str]) -> list[str]:
    """Record ``folders`` for the item index ``index``; returns every root now recorded.

    ``client`` is a sync :class:`elasticsearch.Elasticsearch`. Idempotent: a folder recorded
    before is left as it is.
    """
    name = roots_index_name(index)
    if not client.indices.exists(index=name):
        try:
            client.indices.create(index=name, **roots_index_body())
        except Exception as error:  # created by a concurrent job in between
            if getattr(error, "error", "") != "resource_already_exists_exception":
                raise
    at = utc_iso()
    operations: list[dict[str, Any]] = []
    for root in normalise_roots(folders):
        operations.append({"create": {"_index": name, "_id": _doc_id(root)}})
        operations.append({ROOT_FIELD: root, "recorded_at": at})
    if operations:
        answer = client.bulk(operations=operations, refresh="wait_for")
        for entry in answer["items"]:
            result = entry["create"]
            if result.get("status") not in (201, 409):  # 409: recorded already
                raise RuntimeError(f"could not record an image folder: {result.get('error')}")
    return roots_in_answer(client.search(index=name, body=roots_search_body()).body)
