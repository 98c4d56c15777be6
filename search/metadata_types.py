"""Check ``metadata.<key>`` comparisons against the types the index actually stores.

Metadata is mapped dynamically, so the parser cannot know that ``metadata.camera`` holds
numbers; Elasticsearch then refuses ``metadata.camera = front`` as a whole request, with no
position. Given the index's metadata field types, :func:`check_metadata_types` turns that
into a :class:`~search.errors.TypeMismatchError` pointing at the comparison.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, assert_never

from search.ast import And, Comparison, Count, Label, Node, Not, Or, Similar, Text
from search.errors import TypeMismatchError
from store import schema as f

NUMERIC_TYPES = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "unsigned_long"}
)


def metadata_field_types(mappings: Mapping[str, Any]) -> dict[str, str]:
    """``{"metadata.camera": "long", ...}`` from ``GET <index>/_mapping`` (any number of
    indices behind an alias; a key mapped differently in two of them is left out)."""
    types: dict[str, str] = {}
    conflicts: set[str] = set()
    for index in mappings.values():
        metadata = index.get("mappings", {}).get("properties", {}).get(f.METADATA, {})
        for name, kind in _flatten(metadata.get("properties", {}), f.METADATA):
            if types.setdefault(name, kind) != kind:
                conflicts.add(name)
    return {name: kind for name, kind in types.items() if name not in conflicts}


def _flatten(properties: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for name, spec in properties.items():
        path = f"{prefix}.{name}"
        if "properties" in spec:
            yield from _flatten(spec["properties"], path)
        elif "type" in spec:
            yield path, str(spec["type"])


def _comparisons(node: Node) -> Iterator[Comparison]:
    match node:
        case Comparison():
            yield node
        case Label() | Similar():
            return
        case Not(operand) | Count(condition=operand):
            yield from _comparisons(operand)
        case And(operands) | Or(operands):
            for operand in operands:
                yield from _comparisons(operand)
        case _:
            assert_never(node)


def compares_metadata(node: Node) -> bool:
    """Whether any comparison in ``node`` is on a ``metadata.<key>`` field."""
    prefix = f"{f.METADATA}."
    return any(c.field.startswith(prefix) for c in _comparisons(node))


def check_metadata_types(node: Node, types: Mapping[str, str], query: str) -> None:
    """Raise :class:`TypeMismatchError` for text compared with a numeric metadata field."""
    for comparison in _comparisons(node):
        kind = types.get(comparison.field)
        if kind in NUMERIC_TYPES and isinstance(comparison.value, Text):
            raise TypeMismatchError(
                f"`{comparison.field}` holds numbers in this index, "
                f"but `{comparison.value.value}` is text",
                comparison.span.start,
                comparison.span.end,
                hint=f"compare it with a number, e.g. `{comparison.field} = 3`",
                query=query,
            )
