"""Differential test: for random documents and random queries, the ids Elasticsearch returns
are exactly the ids the reference evaluator accepts.

One fixed, seeded corpus is indexed once and thousands of hypothesis-generated queries run
against it through ``_msearch``; a second test also lets hypothesis draw the documents. The
corpora hold items without predictions (some with empty lists, some with none), rejected and
modified predictions, boxes (with and without the image size, so ``relative_area`` is sometimes
absent) and ``tagged_by`` lists naming training sets that predicted nothing. The fixed-corpus
test counts the queries it checked and asserts that counts, coverage and geometry were among
them in numbers.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, assert_never

import pytest
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import evaluate, parse, render, translate
from search.ast import And, Comparison, Count, Label, Node, Not, Op, Or, Similar
from search.errors import QueryError
from store import schema as f
from store.documents import prepare_item
from store.mapping import index_settings, item_mapping
from tests.search.strategies import (
    items,
    random_item,
    sliced_queries,
    small_trees,
    stored,
    substitute,
)

CORPUS_SIZE = 250
BATCH = 20
FIXED_EXAMPLES = 150
# What the fixed-corpus run must have checked, at least (it draws BATCH * FIXED_EXAMPLES).
MINIMUM_QUERIES = 2500
MINIMUM_PER_FEATURE = 100

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
) -> list[tuple[Node, set[str]]]:
    """Runs ``trees`` on the node and asserts each finds what ``evaluate`` finds."""
    # Go through text, as a user would: what is checked is the query the text means.
    parsed = [parse(render(tree)) for tree in trees]
    searches: list[dict[str, Any]] = []
    for tree in parsed:
        query = translate(tree, inner_hits=True)
        searches += [{"index": index}, {"query": query, "size": 1000, "_source": False}]
    responses = es.msearch(searches=searches)["responses"]
    checked = []
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
        checked.append((tree, found))
    return checked


def features(node: Node) -> set[str]:
    """The constructs of round 2 that ``node`` uses (for the tallies)."""
    match node:
        case Count(condition=inside, op=op, number=number):
            kinds = {"count", f"count {op}"}
            if op in (Op.EQ, Op.LT, Op.LE) and (number == 0 or op is not Op.EQ):
                kinds.add("count matching absence")
            if f.PRED_COUNT_RANKS in json.dumps(translate(node)):
                kinds |= {"ranked count", *(f"ranked count, {k}" for k in _ranked_kinds(node))}
            return kinds | {f"{kind} in count" for kind in features(inside)}
        case Comparison(field=name):
            if name == f.TAGGED_BY:
                return {"tagged_by"}
            if name in f.BOX_GEOMETRY:
                return {"geometry", name}
            return set()
        case Label() | Similar():
            return set()
        case Not(operand):
            return features(operand)
        case And(operands) | Or(operands):
            return {kind for child in operands for kind in features(child)}
        case _:
            assert_never(node)


def _ranked_kinds(node: Node) -> set[str]:
    """What a count read from ``count_ranks`` holds besides its label."""
    text = render(node)
    kinds = {"score bound"} if "score" in text else set()
    if "training_set" in text:
        kinds.add("training set")
    if " OR " in text:
        kinds.add("labels OR")
    return kinds


def _bare(document: dict[str, Any]) -> bool:
    return not any(document.get(path) for path in f.PREDICTION_PATHS)


@pytest.fixture(scope="module")
def corpus(es: Elasticsearch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    rng = random.Random(20240131)
    documents = [
        stored(prepare_item(random_item(rng, f"item-{n:04d}")), drop_empty=rng.random() < 0.5)
        for n in range(CORPUS_SIZE)
    ]
    documents.append(stored(prepare_item({"item_id": "empty"}), drop_empty=True))
    name = _create(es, documents)
    yield name, documents
    es.indices.delete(index=name, ignore_unavailable=True)


def test_the_fixed_corpus_has_the_awkward_cases(
    corpus: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = corpus
    objects = [p for doc in documents for p in doc.get(f.OBJECT_PREDICTIONS, ())]
    predictions = objects + [p for doc in documents for p in doc.get(f.IMAGE_PREDICTIONS, ())]
    statuses = Counter(p[f.PRED_STATUS] for p in predictions)
    assert len(statuses) == len(f.PredictionStatus)
    assert min(statuses.values()) >= 50
    assert sum(_bare(doc) and f.OBJECT_PREDICTIONS not in doc for doc in documents) >= 5
    assert sum(_bare(doc) and doc.get(f.OBJECT_PREDICTIONS) == [] for doc in documents) >= 5
    assert sum(f.PRED_BOX_AREA in p and f.PRED_RELATIVE_AREA not in p for p in objects) >= 50
    assert sum(p.get(f.PRED_RELATIVE_AREA) == 1 for p in objects) >= 5  # boxes past the edges
    assert sum(f.PRED_BBOX not in p for p in objects) >= 20
    assert sum("model_v3" in doc.get(f.TAGGED_BY, ()) for doc in documents) >= 50
    assert sum(f.TAGGED_BY not in doc for doc in documents) >= 20


def test_fixed_corpus_agrees_with_evaluator(
    es: Elasticsearch, corpus: tuple[str, list[dict[str, Any]]], request: pytest.FixtureRequest
) -> None:
    index, documents = corpus
    tally: Counter[str] = Counter()

    @settings(
        max_examples=FIXED_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(small_trees(), min_size=BATCH, max_size=BATCH))
    def run(trees: list[Node]) -> None:
        for tree, found in _check(es, index, documents, trees):
            tally["queries"] += 1
            tally.update(features(tree))
            if found and len(found) < len(documents):
                tally["neither none nor all"] += 1
            if any(_bare(doc) for doc in documents if doc["item_id"] in found):
                tally["found an item without predictions"] += 1

    run()
    line = ", ".join(f"{kind}: {n}" for kind, n in sorted(tally.items()))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[differential] 0 mismatches; {line}", flush=True)
    assert tally["queries"] >= MINIMUM_QUERIES
    assert tally["neither none nor all"] >= tally["queries"] // 2
    for kind in ("count", "count matching absence", "tagged_by", "geometry", "relative_area"):
        assert tally[kind] >= MINIMUM_PER_FEATURE, (kind, tally)
    for op in Op:
        assert tally[f"count {op}"] >= MINIMUM_PER_FEATURE // 10, (op, tally)
    assert tally["geometry in count"] >= MINIMUM_PER_FEATURE // 10
    for kind in ("", ", score bound", ", training set", ", labels OR"):
        assert tally[f"ranked count{kind}"] >= MINIMUM_PER_FEATURE // 10, (kind, tally)
    assert tally["found an item without predictions"] >= MINIMUM_PER_FEATURE


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
    documents = [
        stored(prepare_item(item), drop_empty=n % 2 == 0) for n, item in enumerate(raw_items)
    ]
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
