"""Create the items index behind its alias, so later schema versions can replace it, and add
to an existing index the fields a later version of the mapping has."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elasticsearch import Elasticsearch

from store.calls import Call, Op, drive
from store.mapping import INDEX_ALIAS, index_settings, item_mapping, versioned_index_name


def ensure_index(
    client: Elasticsearch, alias: str = INDEX_ALIAS, *, shards: int = 1, replicas: int = 0
) -> str:
    """Create ``<alias>-v<N>`` with the current mapping and point ``alias`` at it, if missing.

    Returns the concrete index name the alias points to.
    """
    return drive(client, ensure_index_op(alias, shards=shards, replicas=replicas))


def ensure_index_op(alias: str = INDEX_ALIAS, *, shards: int = 1, replicas: int = 0) -> Op[str]:
    """:func:`ensure_index` as a :mod:`store.calls` operation (for the API's async client).

    An existing concrete index of that name (not an alias) is used as it is.
    """
    if (yield Call("indices.exists_alias", {"name": alias})):
        aliases = yield Call("indices.get_alias", {"name": alias})
        return str(next(iter(aliases)))
    if (yield Call("indices.exists", {"index": alias})):
        return alias
    concrete = versioned_index_name(alias)
    if not (yield Call("indices.exists", {"index": concrete})):
        yield Call(
            "indices.create",
            {
                "index": concrete,
                "mappings": item_mapping(),
                "settings": index_settings(shards=shards, replicas=replicas),
                "aliases": {alias: {"is_write_index": True}},
            },
        )
    else:
        yield Call("indices.put_alias", {"index": concrete, "name": alias, "is_write_index": True})
    return concrete


def missing_properties(
    wanted: Mapping[str, Any], present: Mapping[str, Any], prefix: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """The part of the ``wanted`` properties that ``present`` lacks, as a put-mapping body's
    ``properties``, and the dotted names of the fields it adds.

    An object or nested field that exists but lacks sub-fields is repeated with its type, so
    Elasticsearch merges into it instead of reading it as a plain object.
    """
    body: dict[str, Any] = {}
    added: list[str] = []
    for name, definition in wanted.items():
        path = f"{prefix}{name}"
        if name not in present:
            body[name] = definition
            added.append(path)
        elif "properties" in definition:
            inner, inner_added = missing_properties(
                definition["properties"], present[name].get("properties", {}), f"{path}."
            )
            if inner:
                outer = {key: value for key, value in definition.items() if key != "properties"}
                body[name] = {**outer, "properties": inner}
                added += inner_added
    return body, added


def update_mapping(client: Elasticsearch, index: str = INDEX_ALIAS) -> dict[str, list[str]]:
    """Add the current mapping's fields that ``index`` (an index or alias) lacks, e.g. the box
    geometry of an index created before it existed; fields already there are left alone.

    Returns, per concrete index, the dotted names of the fields added. Documents written
    before get values for derived fields when they are written again.
    """
    wanted = item_mapping()["properties"]
    added: dict[str, list[str]] = {}
    for concrete, found in client.indices.get_mapping(index=index).items():
        present = found.get("mappings", {}).get("properties", {})
        body, names = missing_properties(wanted, present)
        if body:
            client.indices.put_mapping(index=concrete, properties=body)
        added[concrete] = names
    return added
