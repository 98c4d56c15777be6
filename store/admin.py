"""Create the items index behind its alias, so later schema versions can replace it."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from store.mapping import INDEX_ALIAS, index_settings, item_mapping, versioned_index_name


def ensure_index(
    client: Elasticsearch, alias: str = INDEX_ALIAS, *, shards: int = 1, replicas: int = 0
) -> str:
    """Create ``<alias>-v<N>`` with the current mapping and point ``alias`` at it, if missing.

    Returns the concrete index name the alias points to.
    """
    if client.indices.exists_alias(name=alias):
        return next(iter(client.indices.get_alias(name=alias)))
    concrete = versioned_index_name(alias)
    if not client.indices.exists(index=concrete):
        client.indices.create(
            index=concrete,
            mappings=item_mapping(),
            settings=index_settings(shards=shards, replicas=replicas),
            aliases={alias: {"is_write_index": True}},
        )
    else:
        client.indices.put_alias(index=concrete, name=alias, is_write_index=True)
    return concrete


def ensure_truth_mapping(client: Elasticsearch, index: str) -> bool:
    """Add the ground-truth fields to an index made before they existed (additive, no reindex).

    Returns whether a put-mapping was needed. Mapping new fields into an existing index is
    allowed; nothing stored changes.
    """
    from store import schema as f
    from store.mapping import truth_mapping

    current = client.indices.get_mapping(index=index)
    missing = any(
        f.TRUTH_OBJECTS not in (body.get("mappings", {}).get("properties") or {})
        for body in current.values()
    )
    if missing:
        client.indices.put_mapping(index=index, properties=truth_mapping())
    return missing
