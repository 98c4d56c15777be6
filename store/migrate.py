"""Copy the items index to the current schema version behind its alias, losing nothing.

The items live in ``<alias>-v<N>`` behind the alias every reader and writer uses
(``store.admin``). When ``store.mapping.SCHEMA_VERSION`` moves past the version of the index the
alias points to, :func:`migrate` builds ``<alias>-v<SCHEMA_VERSION>`` with the current mapping
and copies every item across, client-side (this distribution has no ``_reindex``):

1. writes to the old index are blocked (``index.blocks.write``), so nothing can change behind
   the copy; readers keep reading it through the alias all along;
2. the new index is created with the current mapping and settings, the old index's ``_meta``
   carried over (the embedding model, anything else recorded there);
3. every document is read in ``_doc`` order from a point in time with ``search_after`` and
   written with bulk ``create`` under the same id, ``_source`` as it was (vectors included)
   but for the derived fields, computed again by the current code
   (``store.documents.finish_item``: a new version may derive more, as 3's ``count_ranks``);
4. the new index is refreshed and its count checked against the old one's; only when they
   match, with no failed document, the alias moves to the new index in one atomic
   ``_aliases`` call, and the new index becomes the write index.

A run that stops half way (a crash, Ctrl-C, a failed document) leaves the alias on the old
index, still write-blocked, and the partial copy in place: running the migration again resumes,
skipping documents already copied (the old index cannot have changed since). :func:`abort`
lifts the block and deletes the partial copy instead. The old index is kept, read-only, after
a successful migration unless ``delete_old`` is asked for.

Nothing here knows which fields changed: any mapping the current code defines is the target,
and the current code derives what it derives, so the same command serves every future schema
version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from elasticsearch import Elasticsearch

from store.calls import Call, Op
from store.documents import finish_item
from store.embeddings import index_meta, schema_version
from store.mapping import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_META,
    index_settings,
    item_mapping,
    versioned_index_name,
)
from store.snapshot import snapshot_pages

BATCH: Final = 500
_WRITE_BLOCK: Final = "index.blocks.write"


class MigrationError(RuntimeError):
    """The migration cannot start or did not complete; the message says what to do."""


@dataclass(frozen=True)
class MigrationPlan:
    alias: str
    source: str
    target: str
    source_version: int
    target_version: int


@dataclass
class MigrationReport:
    plan: MigrationPlan
    source_count: int = 0
    target_count: int = 0
    copied: int = 0
    already_there: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    resumed: bool = False
    swapped: bool = False
    old_deleted: bool = False


def plan(client: Elasticsearch, alias: str, *, version: int = SCHEMA_VERSION) -> MigrationPlan:
    """What :func:`migrate` would do for ``alias``; raises :class:`MigrationError` if it can't."""
    if not client.indices.exists_alias(name=alias):
        if client.indices.exists(index=alias):
            raise MigrationError(
                f"{alias!r} is an index, not an alias: migrations copy an index behind its "
                "alias. Point an alias at it (or use an index created by autotag) first"
            )
        raise MigrationError(f"no index or alias named {alias!r}: nothing to migrate")
    indices = list(client.indices.get_alias(name=alias))
    if len(indices) != 1:
        raise MigrationError(f"alias {alias!r} points to {len(indices)} indices: {indices}")
    source = indices[0]
    mapping = client.indices.get_mapping(index=source).body
    current = schema_version(mapping, source)
    return MigrationPlan(alias, source, versioned_index_name(alias, version), current, version)


def older_schema_op(alias: str) -> Op[tuple[str, int] | None]:
    """The index ``alias`` points to and its schema version, when that is older than the code's
    (as a :mod:`store.calls` operation, for the API's start-up check); None otherwise."""
    if not (yield Call("indices.exists_alias", {"name": alias})):
        return None
    older = None
    mappings = (yield Call("indices.get_mapping", {"index": alias})).body
    for index in mappings:
        version = schema_version(mappings, index)
        if version < SCHEMA_VERSION:
            older = (str(index), version)
    return older


def needs_migration(client: Elasticsearch, alias: str) -> bool:
    """Whether ``alias`` points to an index of an older schema version than the code's."""
    if not client.indices.exists_alias(name=alias):
        return False
    found = plan(client, alias)
    return found.source_version < found.target_version


def migrate(
    client: Elasticsearch,
    alias: str,
    *,
    batch: int = BATCH,
    delete_old: bool = False,
    on_start: Callable[[MigrationPlan, int, bool], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Copy ``alias``'s index to the current schema version and move the alias (see above).

    ``on_start(plan, documents, resumed)`` is called once the copy is about to begin, and
    ``on_progress(n)`` after each batch of ``n`` documents handled.
    """
    found = plan(client, alias)
    report = MigrationReport(found)
    if found.source_version >= found.target_version:
        return report
    if found.source == found.target:
        raise MigrationError(f"{found.source} is already named as version {found.target_version}")

    client.indices.put_settings(index=found.source, settings={_WRITE_BLOCK: True})
    client.indices.refresh(index=found.source)
    report.source_count = int(client.count(index=found.source)["count"])
    report.resumed = bool(client.indices.exists(index=found.target))
    if report.resumed:
        client.indices.refresh(index=found.target)  # what the last run copied, searchable
    else:
        _create_target(client, found)
    if on_start is not None:
        on_start(found, report.source_count, report.resumed)

    for hits in _documents(client, found.source, batch):
        _copy(client, found.target, hits, report, skip_existing=report.resumed)
        if on_progress is not None:
            on_progress(len(hits))

    client.indices.put_settings(index=found.target, settings={"index.refresh_interval": None})
    client.indices.refresh(index=found.target)
    report.target_count = int(client.count(index=found.target)["count"])
    if report.failed or report.target_count != report.source_count:
        raise MigrationError(
            f"copy incomplete: {found.source} has {report.source_count} items, {found.target} "
            f"{report.target_count}, {len(report.failed)} failed"
            + (f" (first: {report.failed[0][0]}: {report.failed[0][1]})" if report.failed else "")
            + f". The alias still points to {found.source}, whose writes stay blocked: fix the "
            "cause and run the migration again to resume, or abort it"
        )
    client.indices.update_aliases(
        actions=[
            {"remove": {"index": found.source, "alias": alias}},
            {"add": {"index": found.target, "alias": alias, "is_write_index": True}},
        ]
    )
    report.swapped = True
    if delete_old:
        client.indices.delete(index=found.source)
        report.old_deleted = True
    return report


def abort(client: Elasticsearch, alias: str) -> MigrationPlan:
    """Undo an unfinished migration: delete the partial copy, lift the old index's block."""
    found = plan(client, alias)
    if found.source == found.target:
        raise MigrationError(f"{alias!r} already points to {found.target}: nothing to abort")
    client.indices.delete(index=found.target, ignore_unavailable=True)
    client.indices.put_settings(index=found.source, settings={_WRITE_BLOCK: None})
    return found


def _create_target(client: Elasticsearch, found: MigrationPlan) -> None:
    source_mapping = client.indices.get_mapping(index=found.source).body
    mappings = item_mapping()
    mappings["_meta"] = {**index_meta(source_mapping), SCHEMA_VERSION_META: found.target_version}
    old = client.indices.get_settings(index=found.source).body[found.source]["settings"]["index"]
    settings: dict[str, Any] = index_settings(
        shards=int(old.get("number_of_shards", 1)), replicas=int(old.get("number_of_replicas", 0))
    )
    # No refreshes while copying; set back to the default before the alias moves.
    settings["refresh_interval"] = "-1"
    client.indices.create(index=found.target, mappings=mappings, settings=settings)


def _documents(client: Elasticsearch, index: str, batch: int) -> Any:
    """Every document of ``index`` (id and full ``_source``), ``batch`` at a time."""
    # Vectors too, whatever the old index's exclude_source_vectors says.
    return snapshot_pages(client, index, size=batch, source={"exclude_vectors": False})


def _copy(
    client: Elasticsearch,
    target: str,
    hits: list[Mapping[str, Any]],
    report: MigrationReport,
    *,
    skip_existing: bool,
) -> None:
    if skip_existing:
        ids = [str(hit["_id"]) for hit in hits]
        there = client.search(
            index=target, query={"ids": {"values": ids}}, size=len(ids), source=False
        )
        existing = {hit["_id"] for hit in there["hits"]["hits"]}
        report.already_there += len(existing)
        hits = [hit for hit in hits if hit["_id"] not in existing]
    if not hits:
        return
    operations: list[Mapping[str, Any]] = []
    for hit in hits:
        operations.append({"create": {"_index": target, "_id": hit["_id"]}})
        operations.append(finish_item(dict(hit["_source"])))
    response = client.bulk(
        operations=operations, filter_path=["items.*._id", "items.*.status", "items.*.error"]
    )
    for outcome in response["items"]:
        status = next(iter(outcome.values()))
        code = int(status.get("status", 500))
        if code < 300:
            report.copied += 1
        elif code == 409:
            report.already_there += 1
        else:
            reason = status.get("error", {}).get("reason", f"status {code}")
            report.failed.append((str(status.get("_id")), str(reason)))
