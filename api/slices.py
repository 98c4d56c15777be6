"""Saved slices for the API: the lookup a query is parsed with, and saving, deleting and
renaming slices so that no saved slice is silently broken.

The language resolves ``slice = "name"`` from a lookup it is handed (``search.parse``); this
module fetches that lookup from the store (``store.slices``) before parsing, only for queries
that name a slice. A slice's query is validated when it is saved: it parses (with the saved
slices it uses), its metadata comparisons fit the index, and every saved slice that uses it
still does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elasticsearch import AsyncElasticsearch

from api.errors import ApiError, query_error_details
from api.models import SliceInfo
from api.query import check_metadata
from api.settings import Settings
from search import (
    QueryError,
    dependants,
    parse,
    rename_references,
    render,
    slice_references,
    used_slices,
)
from store import slices as store
from store.clock import utc_iso
from store.slices import MAX_SLICES, IncompleteAnswer, SavedSlice, SliceExists

SliceLookup = tuple[tuple[str, str], ...]


async def saved_slices(es: AsyncElasticsearch, index: str) -> list[SavedSlice]:
    try:
        return await store.list_slices(es, index)
    except IncompleteAnswer as error:
        raise ApiError(
            503,
            "search_unavailable",
            "Some shards of the slices index did not answer",
            {"reason": str(error)},
            headers={"Retry-After": "1"},
        ) from error


async def lookup_for(es: AsyncElasticsearch, index: str, text: str) -> SliceLookup:
    """The slices ``text`` may use, as ``parse_query`` takes them; ``()`` (and no request to
    Elasticsearch) when it names none.

    Only the slices it uses go into the lookup (and the memo key), unless it names one that is
    not saved: then all of them, so the error can suggest the closest name.
    """
    if not slice_references(text):
        return ()
    saved = {s.name: s.query for s in await saved_slices(es, index)}
    used = used_slices(text, saved)
    named = set(slice_references(text)).union(*(slice_references(q) for q in used.values()))
    lookup = used if named <= used.keys() else saved
    return tuple(sorted(lookup.items()))


def describe(saved: SavedSlice, lookup: Mapping[str, str], max_length: int) -> SliceInfo:
    """A saved slice as the API shows it: what it uses, what uses it, what it expands to."""
    expansion, error = None, None
    try:
        expansion = render(parse(saved.query, max_length=max_length, slices=lookup))
    except QueryError as problem:
        error = problem.render()
    return SliceInfo(
        name=saved.name,
        query=saved.query,
        description=saved.description,
        references=list(saved.references),
        used_by=dependants(saved.name, lookup),
        expansion=expansion,
        error=error,
        created_at=saved.created_at,
        updated_at=saved.updated_at,
    )


async def _check(
    es: AsyncElasticsearch, settings: Settings, name: str, lookup: Mapping[str, str]
) -> None:
    """``name``'s query (as in ``lookup``) is a valid query for this index: else a 400 with the
    caret in that query."""
    text = lookup[name]
    tree = parse(text, max_length=settings.query_max_length, slices=lookup)
    await check_metadata(es, settings.index, tree, text)


async def _check_dependants(
    es: AsyncElasticsearch, settings: Settings, name: str, lookup: Mapping[str, str]
) -> list[str]:
    """The slices using ``name``, each still valid with ``lookup``: else a 409 naming them."""
    users = dependants(name, lookup)
    for user in users:
        try:
            await _check(es, settings, user, lookup)
        except QueryError as error:
            raise ApiError(
                409,
                "slice_in_use",
                f"Saving `{name}` this way would break the slice `{user}` that uses it",
                {"dependants": users, "broken": user, "error": query_error_details(error)},
            ) from None
    return users


async def put_slice(
    es: AsyncElasticsearch,
    settings: Settings,
    name: str,
    query: str,
    description: str | None,
) -> tuple[SliceInfo, bool]:
    """Save ``name`` (new or replaced) after checking it and the slices that use it."""
    saved = await saved_slices(es, settings.index)
    previous = next((s for s in saved if s.name == name), None)
    if previous is None and len(saved) >= MAX_SLICES:
        raise ApiError(409, "too_many_slices", f"At most {MAX_SLICES} slices can be saved")
    lookup = {s.name: s.query for s in saved}
    lookup[name] = query
    await _check(es, settings, name, lookup)
    await _check_dependants(es, settings, name, lookup)
    now = utc_iso()
    entry = SavedSlice(
        name=name,
        query=query,
        description=description,
        references=tuple(slice_references(query)),
        created_at=previous.created_at if previous else now,
        updated_at=now,
    )
    await store.save_slice(es, settings.index, entry)
    return describe(entry, lookup, settings.query_max_length), previous is None


async def get_slice(es: AsyncElasticsearch, settings: Settings, name: str) -> SliceInfo:
    saved = await saved_slices(es, settings.index)
    found = next((s for s in saved if s.name == name), None)
    if found is None:
        raise not_found(name, saved)
    lookup = {s.name: s.query for s in saved}
    return describe(found, lookup, settings.query_max_length)


def not_found(name: str, saved: list[SavedSlice]) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"No slice named `{name}`",
        {"slices": [s.name for s in saved][:100]},
    )


async def delete_slice(
    es: AsyncElasticsearch, settings: Settings, name: str, *, force: bool
) -> list[str]:
    """Delete ``name``; the slices left unresolvable (only with ``force``, else a 409)."""
    saved = await saved_slices(es, settings.index)
    if all(s.name != name for s in saved):
        raise not_found(name, saved)
    users = dependants(name, {s.name: s.query for s in saved})
    if users and not force:
        raise ApiError(
            409,
            "slice_in_use",
            f"The slice `{name}` is used by {', '.join(f'`{u}`' for u in users)}",
            {"dependants": users, "hint": "delete or change them first, or pass force=true"},
        )
    if not await store.delete_slice(es, settings.index, name):
        raise not_found(name, saved)
    return users


async def rename_slice(
    es: AsyncElasticsearch,
    settings: Settings,
    name: str,
    to: str,
    *,
    update_dependants: bool,
) -> tuple[SliceInfo, list[str]]:
    """Save ``name`` as ``to`` and delete ``name``; the slices that used it are rewritten to
    ``to`` when ``update_dependants`` (else a slice in use is not renamed: 409).

    Steps: create ``to``, rewrite the dependants, delete ``name``. A failure half way leaves
    both names saved and resolvable, never a dangling one.
    """
    saved = await saved_slices(es, settings.index)
    by_name = {s.name: s for s in saved}
    if name not in by_name:
        raise not_found(name, saved)
    if to in by_name:
        raise ApiError(409, "conflict", f"A slice named `{to}` already exists")
    lookup = {s.name: s.query for s in saved}
    direct = sorted(n for n, s in by_name.items() if name in slice_references(s.query))
    users = dependants(name, lookup)
    if users and not update_dependants:
        raise ApiError(
            409,
            "slice_in_use",
            f"The slice `{name}` is used by {', '.join(f'`{u}`' for u in users)}",
            {"dependants": users, "hint": "pass update_dependants=true to rewrite them"},
        )
    old = by_name[name]
    now = utc_iso()
    renamed = SavedSlice(to, old.query, old.description, old.references, old.created_at, now)
    try:
        await store.save_slice(es, settings.index, renamed, create=True)
    except SliceExists:
        raise ApiError(409, "conflict", f"A slice named `{to}` already exists") from None
    lookup[to] = old.query
    for user in direct:
        text = rename_references(lookup[user], name, to)
        lookup[user] = text
        entry = by_name[user]
        updated = SavedSlice(
            user, text, entry.description, tuple(slice_references(text)), entry.created_at, now
        )
        await store.save_slice(es, settings.index, updated)
    await store.delete_slice(es, settings.index, name)
    del lookup[name]
    return describe(renamed, lookup, settings.query_max_length), direct


def info_list(saved: list[SavedSlice], max_length: int) -> list[dict[str, Any]]:
    lookup = {s.name: s.query for s in saved}
    return [describe(s, lookup, max_length).model_dump() for s in saved]
