"""Differential test: for random documents and random queries, the ids Elasticsearch returns
are exactly the ids the reference evaluator accepts.

One fixed, seeded corpus is indexed once and thousands of hypothesis-generated queries run
against it through ``_msearch``; a second test also lets hypothesis draw the documents.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import evaluate, parse, render, translate
from search.ast import Node
from search.errors import QueryError
from store.documents import prepare_item
from store.mapping import index_settings, item_mapping
from tests.search.strategies import items, random_item, sliced_queries, small_trees, substitute

CORPUS_SIZE = 250
BATCH = 20

pytestmark = pytest.mark.es


def _create(es: Elasticsearch, documents: list[dict[str, Any]]) -> str:
    name = f"test-differential-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=name, mappings=item_mapping(), settings=index_settings())
    operations: list[dict[str, Any]] = []
    for document in documents:
        operations += [{"index": {"_index": name, "_id": document["item_id"]}}, document]
    if operations:
        response = es.bulk(operations=operations, refresh=True)
        assert not response["errors"], response
    return name


def _check(
    es: Elasticsearch, index: str, documents: list[dict[str, Any]], trees: list[Node]
) -> None:
    # Go through text, as a user would: what is checked is the query the text means.
    parsed = [parse(render(tree)) for tree in trees]
    searches: list[dict[str, Any]] = []
    for tree in parsed:
        query = translate(tree, inner_hits=True)
        searches += [{"index": index}, {"query": query, "size": 1000, "_source": False}]
    responses = es.msearch(searches=searches)["responses"]
    for tree, response in zip(parsed, responses, strict=True):
        assert "error" not in response, (render(tree), response)
        found = {hit["_id"] for hit in response["hits"]["hits"]}
        expected = {doc["item_id"] for doc in documents if evaluate(tree, doc)}
        assert found == expected, (
            f"query: {render(tree)}\n"
            f"only Elasticsearch: {sorted(found - expected)}\n"
            f"only evaluate(): {sorted(expected - found)}\n"
            f"dsl: {translate(tree)}"
        )


@pytest.fixture(scope="module")
def corpus(es: Elasticsearch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    rng = random.Random(20240131)
    documents = [prepare_item(random_item(rng, f"item-{n:04d}")) for n in range(CORPUS_SIZE)]
    documents.append(prepare_item({"item_id": "empty"}))
    name = _create(es, documents)
    yield name, documents
    es.indices.delete(index=name, ignore_unavailable=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(small_trees(), min_size=BATCH, max_size=BATCH))
def test_fixed_corpus_agrees_with_evaluator(
    es: Elasticsearch, corpus: tuple[str, list[dict[str, Any]]], trees: list[Node]
) -> None:
    index, documents = corpus
    _check(es, index, documents, trees)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(st.integers(0, 10**6), min_size=0, max_size=25, unique=True).flatmap(
        lambda ids: st.tuples(*(items(f"item-{i}") for i in ids))
    ),
    st.lists(small_trees(), min_size=BATCH, max_size=BATCH),
)
def test_random_corpus_agrees_with_evaluator(
    es: Elasticsearch, raw_items: tuple[dict[str, Any], ...], trees: list[Node]
) -> None:
    documents = [prepare_item(item) for item in raw_items]
    index = _create(es, documents)
    try:
        _check(es, index, documents, trees)
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(st.lists(sliced_queries(), min_size=BATCH // 2, max_size=BATCH // 2))
def test_queries_with_slices_agree_with_evaluator(
    es: Elasticsearch,
    corpus: tuple[str, list[dict[str, Any]]],
    cases: list[tuple[dict[str, str], str]],
) -> None:
    """Slices resolved by the parser: Elasticsearch and the evaluator agree on the resolved
    tree, and it is the tree of the query with every slice written out in parentheses."""
    index, documents = corpus
    trees: list[Node] = []
    for slices, query in cases:
        try:
            tree = parse(query, slices=slices)
        except QueryError:
            continue  # refused written out too (tests/search/test_slices.py)
        assert tree == parse(substitute(query, slices)), query
        trees.append(tree)
    _check(es, index, documents, trees)
