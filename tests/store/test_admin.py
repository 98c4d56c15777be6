"""Adding a later mapping's fields to an existing index (``store.admin.update_mapping`` and
``autotag update-mapping``), on a real node: an index created before the box-geometry fields."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from cli.main import main
from search import parse, translate
from store import schema as f
from store.admin import missing_properties, update_mapping
from store.documents import prepare_item
from store.mapping import index_settings, item_mapping

GEOMETRY = [f"{f.OBJECT_PREDICTIONS}.{name}" for name in f.BOX_GEOMETRY]
ITEM = {
    "item_id": "old",
    "width": 100,
    "height": 100,
    "object_predictions": [{"label": "car", "bbox": {"x1": 0, "y1": 0, "x2": 20, "y2": 20}}],
}
SMALL_CARS = "object_prefix:car AND box_area < 1024"


def _mapping_before_box_geometry() -> dict[str, Any]:
    mapping = copy.deepcopy(item_mapping())
    objects = mapping["properties"][f.OBJECT_PREDICTIONS]["properties"]
    for name in f.BOX_GEOMETRY:
        del objects[name]
    return mapping


def _without_geometry(document: dict[str, Any]) -> dict[str, Any]:
    """The document an earlier version wrote: no derived box fields."""
    old = copy.deepcopy(document)
    for prediction in old[f.OBJECT_PREDICTIONS]:
        for name in f.BOX_GEOMETRY:
            prediction.pop(name, None)
    return old


@pytest.fixture
def old_index(es: Elasticsearch) -> Iterator[str]:
    name = f"test-old-mapping-{uuid.uuid4().hex[:12]}"
    es.indices.create(
        index=name, mappings=_mapping_before_box_geometry(), settings=index_settings()
    )
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)


def _ids(es: Elasticsearch, index: str, query: str) -> set[str]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, query=translate(parse(query)))["hits"]["hits"]
    return {hit["_id"] for hit in hits}


def test_missing_properties_repeats_the_nested_type_around_new_sub_fields() -> None:
    body, added = missing_properties(
        item_mapping()["properties"], _mapping_before_box_geometry()["properties"]
    )
    assert added == GEOMETRY
    assert body == {
        f.OBJECT_PREDICTIONS: {
            "type": "nested",
            "properties": {name: {"type": "float"} for name in f.BOX_GEOMETRY},
        }
    }
    assert missing_properties(item_mapping()["properties"], item_mapping()["properties"]) == (
        {},
        [],
    )


@pytest.mark.es
def test_an_index_from_before_box_geometry_gets_the_fields(
    es: Elasticsearch, old_index: str
) -> None:
    document = prepare_item(ITEM)
    es.index(index=old_index, id="old", document=_without_geometry(document))
    # The mapping is strict: today's documents cannot be written before the update.
    with pytest.raises(BadRequestError):
        es.index(index=old_index, id="new", document=document)

    assert update_mapping(es, old_index) == {old_index: GEOMETRY}
    objects = es.indices.get_mapping(index=old_index)[old_index]["mappings"]["properties"]
    nested = objects[f.OBJECT_PREDICTIONS]
    assert nested["type"] == "nested"
    for name in f.BOX_GEOMETRY:
        assert nested["properties"][name] == {"type": "float"}
    assert update_mapping(es, old_index) == {old_index: []}

    # The old document has no values until it is written again.
    assert _ids(es, old_index, SMALL_CARS) == set()
    es.index(index=old_index, id="old", document=document)
    assert _ids(es, old_index, SMALL_CARS) == {"old"}
    assert _ids(es, old_index, "relative_area = 0.04") == {"old"}


@pytest.mark.es
def test_autotag_update_mapping_reports_what_it_added(
    es_url: str,
    old_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ES_URL", raising=False)
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", old_index)
    assert main(["update-mapping"]) == 0
    assert capsys.readouterr().out == f"{old_index}: added {', '.join(GEOMETRY)}\n"
    assert main(["update-mapping", "--index", old_index]) == 0
    assert capsys.readouterr().out == f"{old_index}: nothing to add\n"
    assert main(["update-mapping", "--index", f"{old_index}-missing"]) == 1
    assert "no index or alias" in capsys.readouterr().err
