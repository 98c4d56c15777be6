"""Create the items index behind its alias, so later schema versions can replace it."""

from __future__ import annotations

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
