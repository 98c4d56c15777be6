"""Translation beyond the golden files: inner hits, matched-prediction filters, DSL hygiene."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from hypothesis import given, settings

from search import matched_prediction_filters, parse, translate, visible_predictions_filter
from search.ast import Node
from store.documents import prepare_item
from tests.search.strategies import any_trees

FORBIDDEN = {"query_string", "simple_query_string", "script", "regexp", "wildcard", "fuzzy"}


def _walk(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, (*path, key))
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child, path)


def _inner_hit_names(query: dict[str, Any]) -> list[tuple[str, bool]]:
    """(name, under must_not) for every nested clause that has inner hits."""
    return [
        (value["inner_hits"]["name"], "must_not" in path)
        for path, value in _walk(query)
        if path and path[-1] == "nested" and "inner_hits" in value
    ]


def test_inner_hits_only_on_positive_nested_clauses() -> None:
    query = translate(
        parse("(object_prefix:car OR score > 0.9) AND NOT image_prefix:night"), inner_hits=True
    )
    names = _inner_hit_names(query)
    assert names == [
        ("object_predictions_0", False),
        ("image_predictions_1", False),
        ("object_predictions_2", False),
    ]
    nested = [value for path, value in _walk(query) if path and path[-1] == "nested"]
    assert len(nested) == 4


def test_no_inner_hits_by_default() -> None:
    assert not _inner_hit_names(translate(parse("object_prefix:car")))


@settings(max_examples=300, deadline=None)
@given(any_trees())
def test_dsl_hygiene(tree: Node) -> None:
    query = translate(tree, inner_hits=True)
    keys = {key for path, _ in _walk(query) for key in path}
    assert not keys & FORBIDDEN
    names = [name for name, _ in _inner_hit_names(query)]
    assert len(names) == len(set(names))
    assert all(not negated for _, negated in _inner_hit_names(query))
    assert list(query) == ["bool"]
    assert set(query["bool"]) <= {"filter", "must_not"}


def test_matched_prediction_filters() -> None:
    filters = matched_prediction_filters(parse("object_prefix:car AND score < 0.5"))
    assert filters == {
        "object_predictions": {
            "bool": {
                "filter": [
                    {"term": {"object_predictions.label_prefixes": "car"}},
                    {"range": {"object_predictions.score": {"lt": 0.5}}},
                ],
                "must_not": [{"term": {"object_predictions.status": "rejected"}}],
            }
        }
    }


def test_visible_predictions_filter() -> None:
    assert visible_predictions_filter("image_predictions") == {
        "bool": {"must_not": [{"term": {"image_predictions.status": "rejected"}}]}
    }
    # It is what every query that does not mention `status` applies inside `nested`...
    hidden = visible_predictions_filter("object_predictions")["bool"]["must_not"]
    query = matched_prediction_filters(parse("object_prefix:car"))["object_predictions"]
    assert query["bool"]["must_not"] == hidden
    # ...and only those.
    seen = matched_prediction_filters(parse("object_prefix:car AND status = rejected"))
    assert "must_not" not in seen["object_predictions"]["bool"]


def test_matched_prediction_filters_or_and_negation() -> None:
    filters = matched_prediction_filters(
        parse("(object_prefix:car OR object_prefix:bus) AND NOT image_prefix:night")
    )
    assert list(filters) == ["object_predictions"]
    should = filters["object_predictions"]["bool"]["should"]
    assert len(should) == 2
    assert filters["object_predictions"]["bool"]["minimum_should_match"] == 1


def test_matched_prediction_filters_empty() -> None:
    assert matched_prediction_filters(parse("dataset = train")) == {}
    assert matched_prediction_filters(parse("NOT object_prefix:car")) == {}


def test_unbound_group_matches_on_both_paths() -> None:
    assert set(matched_prediction_filters(parse("score >= 0.9"))) == {
        "image_predictions",
        "object_predictions",
    }


ITEM = prepare_item(
    {
        "item_id": "x",
        "object_predictions": [
            {"label": "car", "score": 0.9},
            {"label": "pedestrian", "score": 0.2},
            {"label": "car_suv", "score": 0.3},
            {"label": "car", "score": 0.1, "status": "rejected"},
        ],
        "image_predictions": [{"label": "night", "score": 0.4}],
    }
)


@pytest.mark.es
def test_inner_hits_point_at_the_matched_predictions(es: Elasticsearch, item_index: str) -> None:
    es.index(index=item_index, id="x", document=ITEM, refresh=True)
    query = translate(parse("object_prefix:car AND score < 0.5"), inner_hits=True)
    hit = es.search(index=item_index, query=query)["hits"]["hits"][0]
    inner = hit["inner_hits"]["object_predictions_0"]["hits"]["hits"]
    assert [h["_nested"]["offset"] for h in inner] == [2]


@pytest.mark.es
def test_sort_by_matched_prediction_score(es: Elasticsearch, item_index: str) -> None:
    es.index(index=item_index, id="x", document=ITEM, refresh=True)
    tree = parse("object_prefix:car")
    nested_filter = matched_prediction_filters(tree)["object_predictions"]
    sort = {
        "object_predictions.score": {
            "order": "asc",
            "mode": "min",
            "nested": {"path": "object_predictions", "filter": nested_filter},
        }
    }
    hit = es.search(index=item_index, query=translate(tree), sort=[sort])["hits"]["hits"][0]
    # The rejected car (0.1) is invisible; the lowest visible car-like score is car_suv's 0.3.
    assert hit["sort"] == [pytest.approx(0.3)]
