"""Metadata comparisons checked against the index's stored types."""

from __future__ import annotations

import pytest

from search import TypeMismatchError, parse
from search.metadata_types import check_metadata_types, metadata_field_types

MAPPINGS = {
    "items-v1": {"mappings": {"properties": {"metadata": {"properties": {
        "camera": {"type": "long"},
        "city": {"type": "keyword"},
        "rig": {"properties": {"height": {"type": "float"}, "name": {"type": "keyword"}}},
        "mixed": {"type": "long"},
    }}}}},
    "items-v2": {"mappings": {"properties": {"metadata": {"properties": {
        "mixed": {"type": "keyword"},
    }}}}},
}  # fmt: skip


def test_field_types_are_flattened_and_conflicts_dropped() -> None:
    assert metadata_field_types(MAPPINGS) == {
        "metadata.camera": "long",
        "metadata.city": "keyword",
        "metadata.rig.height": "float",
        "metadata.rig.name": "keyword",
    }


def test_text_against_a_numeric_field_points_at_the_comparison() -> None:
    text = 'object_prefix:car AND metadata.camera = "front"'
    with pytest.raises(TypeMismatchError) as caught:
        check_metadata_types(parse(text), metadata_field_types(MAPPINGS), text)
    error = caught.value
    assert text[error.start : error.end] == 'metadata.camera = "front"'
    assert "holds numbers" in error.render()


@pytest.mark.parametrize(
    "text",
    [
        "metadata.camera = 3",
        "metadata.city = Oslo",
        "metadata.rig.height > 1.5",
        "NOT metadata.unknown_key = x",
        'metadata.mixed = "a"',
    ],
)
def test_matching_types_and_unknown_keys_pass(text: str) -> None:
    check_metadata_types(parse(text), metadata_field_types(MAPPINGS), text)
