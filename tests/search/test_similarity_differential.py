"""Differential test for similarity: the reference evaluator's exact top-k (brute-force cosine,
``search.evaluate.nearest``) against Elasticsearch's approximate kNN with the same filter.

Random documents (predictions as in the language's differential test, clustered embeddings,
some items without one), random filters from the language's tree strategy and random query
vectors or reference items. Elasticsearch must answer exactly as many items as the evaluator
(``min(k, items ranked)``), all of them inside the filter, with recall of the exact top-k of at
least ``MIN_RECALL`` over all queries, similarities within the quantization's error, and the
same count of items skipped for lack of an embedding.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.vectors import ClusteredVectors
from search import evaluate, render, translate
from search.ast import And, Node, Similar, SimilarityKind
from search.evaluate import nearest
from search.parser import parse
from search.similarity import candidates_filter, cosine_of_score, knn_query, split
from store import schema as f
from store.documents import prepare_item
from store.mapping import index_settings, item_mapping
from tests.search.strategies import random_item, small_trees

pytestmark = pytest.mark.es
CORPUS = 1000
DIMS = 48
BATCH = 10
MIN_RECALL = 0.95
RESULTS: list[tuple[int, int]] = []  # (found in the exact top-k, size of the exact top-k)


@pytest.fixture(scope="module")
def corpus(es: Elasticsearch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    rng = random.Random(7_140)
    vectors = ClusteredVectors(dims=DIMS, clusters=24, seed=14).block(0, CORPUS)
    documents = []
    for n in range(CORPUS):
        item = random_item(rng, f"item-{n:04d}")
        if rng.random() > 0.1:
            item[f.EMBEDDING] = vectors[n].tolist()
        documents.append(prepare_item(item))
    name = f"test-knn-differential-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=name, mappings=item_mapping(), settings=index_settings())
    operations: list[dict[str, Any]] = []
    for document in documents:
        operations += [{"index": {"_index": name, "_id": document["item_id"]}}, document]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    es.indices.forcemerge(index=name, max_num_segments=1)
    yield name, documents
    es.indices.delete(index=name, ignore_unavailable=True)
    found, total = sum(r[0] for r in RESULTS), sum(r[1] for r in RESULTS)
    print(f"\n[knn differential] {len(RESULTS)} queries, recall {found / max(1, total):.4f}")


def similarity_queries(draw: st.DrawFn, documents: list[dict[str, Any]]) -> tuple[Node, Any]:
    """A similarity clause ANDed with a random filter (or alone), and its query vector."""
    k = draw(st.sampled_from([1, 3, 10, 25, 100]))
    rest = draw(st.none() | small_trees())
    if draw(st.booleans()):
        seed = draw(st.integers(0, 10_000))
        vector = ClusteredVectors(dims=DIMS, clusters=24, seed=14).block(seed, 1, stream=2)[0]
        clause = Similar(SimilarityKind.TEXT, "q", k)
    else:
        with_vectors = [d for d in documents if f.EMBEDDING in d]
        reference = draw(st.sampled_from(with_vectors))
        vector = np.asarray(reference[f.EMBEDDING], dtype=np.float32)
        clause = Similar(SimilarityKind.ITEM, reference["item_id"], k)
    tree: Node = clause if rest is None else And((clause, rest))
    return parse(render(tree)), vector  # as a user would write it


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_elasticsearch_knn_agrees_with_exact_top_k(
    es: Elasticsearch, corpus: tuple[str, list[dict[str, Any]]], data: st.DataObject
) -> None:
    index, documents = corpus
    cases = [data.draw(st.composite(similarity_queries)(documents)) for _ in range(BATCH)]
    searches: list[dict[str, Any]] = []
    for tree, vector in cases:
        clause, rest = split(tree)
        assert clause is not None
        rest_query = translate(rest) if rest is not None else None
        knn = knn_query(clause, vector.tolist(), rest_query)
        searches += [
            {"index": index},
            {"query": knn, "size": clause.k, "_source": False},
            {"index": index},
            {"query": candidates_filter(clause, rest_query), "size": 0, "track_total_hits": True},
        ]
    responses = es.msearch(searches=searches)["responses"]
    for n, (tree, vector) in enumerate(cases):
        answer, ranked = responses[2 * n], responses[2 * n + 1]
        assert "error" not in answer, (render(tree), answer)
        exact = nearest(tree, documents, vector)
        want = [doc["item_id"] for doc, _ in exact.hits]
        got = {hit["_id"]: cosine_of_score(hit["_score"]) for hit in answer["hits"]["hits"]}
        context = f"query: {render(tree)}"
        # As many as the exact answer: min(k, items the filter ranks).
        assert len(got) == len(want), context
        assert ranked["hits"]["total"]["value"] >= len(want), context
        _, rest = split(tree)
        allowed = {doc["item_id"] for doc in documents if f.EMBEDDING in doc} - {tree_value(tree)}
        if rest is not None:
            allowed &= {doc["item_id"] for doc in documents if evaluate(rest, doc)}
        assert set(got) <= allowed, context
        exact_by_id = {doc["item_id"]: similarity for doc, similarity in exact.hits}
        for item_id, similarity in got.items():
            if item_id in exact_by_id:
                assert similarity == pytest.approx(exact_by_id[item_id], abs=0.02), context
        RESULTS.append((len(set(got) & set(want)), len(want)))
    found, total = sum(r[0] for r in RESULTS), sum(r[1] for r in RESULTS)
    assert found >= MIN_RECALL * total, f"recall {found / total:.3f} over {len(RESULTS)} queries"


def tree_value(tree: Node) -> str | None:
    clause, _ = split(tree)
    assert clause is not None
    return clause.value if clause.kind is SimilarityKind.ITEM else None
