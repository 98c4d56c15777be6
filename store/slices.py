"""Saved slices: named queries, kept in a small index of their own beside the items index.

A slice belongs to the items index (or alias) it queries: its index is that name plus
``-slices`` (``autotag-items-slices`` for the default ``autotag-items``), created on the first
save. One document per slice, its id the slice's name. What a slice's query means is the
language's business (``search.slices``); this module only stores and reads the text, and the
names of the slices it uses (``references``, written by the caller) so that the slices using
one can be found.

Writes refresh before they return, so the next query (in any process) sees the slice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from elasticsearch import AsyncElasticsearch, BadRequestError, ConflictError, NotFoundError

SLICES_SUFFIX: Final = "-slices"
# More slices than one answer lists are refused when saving.
MAX_SLICES: Final = 10_000

NAME: Final = "name"
QUERY: Final = "query"
DESCRIPTION: Final = "description"
REFERENCES: Final = "references"
CREATED_AT: Final = "created_at"
UPDATED_AT: Final = "updated_at"


def slices_index(items_index: str) -> str:
    """The index holding the slices of ``items_index``."""
    return f"{items_index}{SLICES_SUFFIX}"


def slice_mapping() -> dict[str, Any]:
    """Strict: a name, the query text (stored, not searched), what it uses, and when."""
    unsearched = {"type": "keyword", "index": False, "doc_values": False}
    return {
        "dynamic": "strict",
        "properties": {
            NAME: {"type": "keyword"},
            QUERY: unsearched,
            DESCRIPTION: unsearched,
            REFERENCES: {"type": "keyword"},
            CREATED_AT: {"type": "date"},
            UPDATED_AT: {"type": "date"},
        },
    }


@dataclass(frozen=True, slots=True)
class SavedSlice:
    name: str
    query: str
    description: str | None
    references: tuple[str, ...]
    created_at: str
    updated_at: str

    def document(self) -> dict[str, Any]:
        return {
            NAME: self.name,
            QUERY: self.query,
            DESCRIPTION: self.description,
            REFERENCES: list(self.references),
            CREATED_AT: self.created_at,
            UPDATED_AT: self.updated_at,
        }

    @classmethod
    def from_document(cls, source: Mapping[str, Any]) -> SavedSlice:
        return cls(
            name=str(source[NAME]),
            query=str(source[QUERY]),
            description=source.get(DESCRIPTION),
            references=tuple(source.get(REFERENCES) or ()),
            created_at=str(source[CREATED_AT]),
            updated_at=str(source[UPDATED_AT]),
        )


class SliceExists(Exception):
    """A slice of that name is already saved (on create)."""


class IncompleteAnswer(Exception):
    """Some shards of the slices index did not answer: the list would be incomplete."""


async def ensure_slices_index(es: AsyncElasticsearch, items_index: str) -> str:
    """Create the slices index of ``items_index`` if missing; returns its name."""
    name = slices_index(items_index)
    if await es.indices.exists(index=name):
        return name
    try:
        await es.indices.create(
            index=name,
            mappings=slice_mapping(),
            settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"},
        )
    except BadRequestError as error:
        if error.error != "resource_already_exists_exception":  # a concurrent first save
            raise
    return name


async def list_slices(es: AsyncElasticsearch, items_index: str) -> list[SavedSlice]:
    """Every saved slice, by name; none before the first save."""
    try:
        response = await es.search(
            index=slices_index(items_index),
            size=MAX_SLICES,
            sort=[{NAME: "asc"}],
            query={"match_all": {}},
        )
    except NotFoundError:
        return []
    shards = response.get("_shards") or {}
    if shards.get("failed"):
        raise IncompleteAnswer(f"{shards['failed']} of {shards.get('total')} shards failed")
    return [SavedSlice.from_document(hit["_source"]) for hit in response["hits"]["hits"]]


async def get_slice(es: AsyncElasticsearch, items_index: str, name: str) -> SavedSlice | None:
    try:
        response = await es.get(index=slices_index(items_index), id=name)
    except NotFoundError:
        return None
    return SavedSlice.from_document(response["_source"])


async def save_slice(
    es: AsyncElasticsearch, items_index: str, saved: SavedSlice, *, create: bool = False
) -> None:
    """Write ``saved`` (replacing a slice of that name, unless ``create``: then
    :class:`SliceExists`)."""
    index = await ensure_slices_index(es, items_index)
    try:
        await es.index(
            index=index,
            id=saved.name,
            document=saved.document(),
            op_type="create" if create else "index",
            refresh="wait_for",
        )
    except ConflictError as error:
        raise SliceExists(saved.name) from error


async def delete_slice(es: AsyncElasticsearch, items_index: str, name: str) -> bool:
    """Delete one slice; ``False`` when there was none."""
    try:
        await es.delete(index=slices_index(items_index), id=name, refresh="wait_for")
    except NotFoundError:
        return False
    return True
