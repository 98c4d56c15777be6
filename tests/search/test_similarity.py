"""Similarity clauses in the language: parsing, rendering, the filter they leave, the reference
ranking (``nearest``) and the kNN query (pure; the node runs in the differential test)."""

from __future__ import annotations

from typing import Any

import pytest

from search import QueryError, evaluate, parse, render, translate
from search.ast import And, Label, Similar, SimilarityKind
from search.evaluate import nearest
from search.similarity import (
    DEFAULT_K,
    MAX_K,
    knn_query,
    num_candidates,
    ranked_query,
    split,
)
from store.documents import prepare_item
from store.schema import PredictionKind


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('similar:"a snowy highway at night"', 'similar:"a snowy highway at night"'),
        ("SIMILAR:snow~5", "similar:snow~5"),
        (
            'similar_to:"drives/a b.jpg"~10 and score>0.5',
            'similar_to:"drives/a b.jpg"~10 AND score > 0.5',
        ),
        ("similar_to:item-7 object_prefix:car", "similar_to:item-7 AND object_prefix:car"),
        (
            '(similar:"and" AND object_prefix:car) and score >= 0.8',
            '(similar:"and" AND object_prefix:car) AND score >= 0.8',
        ),
    ],
)
def test_parse_and_render(text: str, canonical: str) -> None:
    tree = parse(text)
    assert render(tree) == canonical
    assert parse(render(tree)) == tree


def test_the_clause_keeps_its_k_and_spans() -> None:
    tree = parse('object_prefix:car AND similar:"rain"~42')
    assert isinstance(tree, And)
    clause = tree.operands[1]
    assert clause == Similar(SimilarityKind.TEXT, "rain", 42)
    assert (clause.span.start, clause.span.end) == (22, 39)
    assert (clause.value_span.start, clause.value_span.end) == (30, 36)


def test_the_filter_is_the_query_without_the_clause() -> None:
    car = Label(PredictionKind.OBJECT, "car")
    assert split(parse('similar:"x"')) == (Similar(SimilarityKind.TEXT, "x"), None)
    assert split(parse('similar:"x" AND object_prefix:car'))[1] == car
    # Deleting the clause is all: an attribute group binds to the labels it would bind to
    # had the clause never been written, parentheses or not.
    for text in (
        '(similar:"x" AND score > 0.5) AND object_prefix:car',
        'similar:"x" AND score > 0.5 AND object_prefix:car',
    ):
        _, rest = split(parse(text))
        assert rest is not None
        assert translate(rest) == translate(parse("score > 0.5 AND object_prefix:car"))
    assert split(parse("object_prefix:car")) == (None, car)


def item(item_id: str, embedding: list[float] | None, *labels: str) -> dict[str, Any]:
    source: dict[str, Any] = {
        "item_id": item_id,
        "object_predictions": [{"label": label, "score": 0.9} for label in labels],
    }
    if embedding is not None:
        source["embedding"] = embedding
    return prepare_item(source)


ITEMS = [
    item("a", [1, 0], "car"),
    item("b", [0.6, 0.8], "car"),
    item("c", [0.6, 0.8]),  # ties with b: item-id order
    item("d", [0, 1], "car"),
    item("e", None, "car"),  # never ranked
    item("f", [-1, 0]),
]


def test_nearest_ranks_the_filtered_items_by_exact_cosine() -> None:
    answer = nearest(parse('similar:"q"'), ITEMS, [2, 0])
    assert [(doc["item_id"], round(s, 6)) for doc, s in answer.hits] == [
        ("a", 1.0), ("b", 0.6), ("c", 0.6), ("d", 0.0), ("f", -1.0),
    ]  # fmt: skip
    assert answer.skipped_without_embedding == 1
    filtered = nearest(parse('similar:"q"~2 AND object_prefix:car'), ITEMS, [0, 1])
    assert [doc["item_id"] for doc, _ in filtered.hits] == ["d", "b"]
    assert filtered.skipped_without_embedding == 1
    # similar_to: the item's own embedding, the item left out
    to_b = nearest(parse("similar_to:b~3"), ITEMS)
    assert [doc["item_id"] for doc, _ in to_b.hits] == ["c", "d", "a"]
    with pytest.raises(ValueError, match="no embedding"):
        nearest(parse("similar_to:e"), ITEMS)


def test_a_ranked_query_is_not_a_per_item_test() -> None:
    tree = parse('similar:"q" AND object_prefix:car')
    with pytest.raises(ValueError, match="nearest"):
        evaluate(tree, ITEMS[0])
    with pytest.raises(QueryError, match="vector") as caught:
        translate(tree)
    assert (caught.value.start, caught.value.end) == (0, 11)


def test_the_knn_query() -> None:
    tree = parse("similar_to:b~7 AND object_prefix:car")
    clause, rest = split(tree)
    assert clause is not None
    assert rest is not None
    query = knn_query(clause, [0.5, 0.5], translate(rest))["knn"]
    assert query["k"] == 7
    assert query["num_candidates"] == num_candidates(7)
    assert query["filter"] == [
        translate(rest),
        {"bool": {"must_not": [{"ids": {"values": ["b"]}}]}},
    ]
    assert knn_query(Similar(SimilarityKind.TEXT, "x"), [1.0], None)["knn"]["k"] == DEFAULT_K
    hits = translate(rest, inner_hits=True)
    assert ranked_query(clause, [1.0, 0.0], translate(rest), hits_query=hits) == {
        "bool": {"must": [knn_query(clause, [1.0, 0.0], translate(rest))], "filter": [hits]}
    }
    assert num_candidates(1) >= 100
    assert num_candidates(MAX_K) == MAX_K
