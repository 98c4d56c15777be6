"""docs/query-language.md is executed: every ``query`` block must find exactly the sample items
it lists, both with the reference evaluator and on a real node; every ``similar`` block must
rank them in the order it lists (and skip as many without an embedding), with the evaluator's
exact search and Elasticsearch's kNN; every ``query-error`` block must raise the error it
names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

import search
from search import QueryError, evaluate, parse, translate
from search.evaluate import nearest
from search.similarity import knn_query, split
from store.documents import prepare_item

DOC = Path(__file__).resolve().parents[2] / "docs" / "query-language.md"
_BLOCK = re.compile(r"^```(query|query-error|similar|json)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(kind: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [body for found, body in _BLOCK.findall(text) if found == kind]


def _examples() -> list[tuple[str, set[str]]]:
    examples = []
    for body in _blocks("query"):
        query, marker = body.rstrip("\n").rsplit("\n", 1)
        assert marker.startswith("# matches:"), body
        examples.append((query, set(marker.removeprefix("# matches:").split())))
    return examples


def _sample_items() -> list[dict[str, Any]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- sample-items -->\n```json\n", 1)[1].split("```", 1)[0]
    return [prepare_item(item) for item in json.loads(body)]


def _similar_examples() -> list[tuple[str, list[float] | None, list[str], int]]:
    """(query, the text's vector if given, items in rank order, items skipped)."""
    examples = []
    for body in _blocks("similar"):
        query, *lines = body.rstrip("\n").split("\n")
        marks = dict(line.removeprefix("# ").split(": ", 1) for line in lines)
        vector = json.loads(marks["vector"]) if "vector" in marks else None
        examples.append((query, vector, marks["ranked"].split(), int(marks["skipped"])))
    return examples


EXAMPLES = _examples()
SIMILAR = _similar_examples()
ITEMS = _sample_items()


def test_the_reference_has_examples() -> None:
    assert len(EXAMPLES) >= 40
    assert len(SIMILAR) >= 5
    assert len(ITEMS) == 6


@pytest.mark.parametrize(
    ("query", "vector", "ranked", "skipped"), SIMILAR, ids=[s[0] for s in SIMILAR]
)
def test_similar_example_with_evaluator(
    query: str, vector: list[float] | None, ranked: list[str], skipped: int
) -> None:
    answer = nearest(parse(query), ITEMS, vector)
    assert [item["item_id"] for item, _ in answer.hits] == ranked
    assert answer.skipped_without_embedding == skipped


@pytest.mark.parametrize(("query", "expected"), EXAMPLES, ids=[q for q, _ in EXAMPLES])
def test_example_with_evaluator(query: str, expected: set[str]) -> None:
    tree = parse(query)
    assert {item["item_id"] for item in ITEMS if evaluate(tree, item)} == expected


@pytest.mark.parametrize("body", _blocks("query-error"))
def test_error_example(body: str) -> None:
    query, marker = body.rstrip("\n").rsplit("\n", 1)
    expected = getattr(search, marker.removeprefix("# error:").strip())
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert type(caught.value) is expected


def _band_table() -> dict[str, str]:
    """``{band: "same as" query}`` from the score band table."""
    text = DOC.read_text(encoding="utf-8").split("### Score bands", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| `([^`]+)` \|$", text, re.MULTILINE))


def test_score_band_table_matches_the_bands() -> None:
    table = _band_table()
    assert set(table) == {band.value for band in search.Band}
    bounds = {bound for low, high, _ in search.BAND_RANGES.values() for bound in (low, high)}
    scores = sorted({*bounds, *(b - 0.001 for b in bounds), *(b + 0.001 for b in bounds)})
    for band, same_as in table.items():
        for score in scores:
            prediction = {"label": "car", "score": score}
            item = prepare_item({"item_id": "x", "object_predictions": [prediction]})
            by_band = evaluate(parse(f"score = {band}"), item)
            assert by_band == evaluate(parse(same_as), item), (band, score)


@pytest.mark.es
def test_examples_on_elasticsearch(es: Elasticsearch, item_index: str) -> None:
    operations: list[dict[str, Any]] = []
    for item in ITEMS:
        operations += [{"index": {"_index": item_index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    for query, expected in EXAMPLES:
        response = es.search(index=item_index, query=translate(parse(query)), size=100)
        assert {hit["_id"] for hit in response["hits"]["hits"]} == expected, query
    by_id = {item["item_id"]: item for item in ITEMS}
    for query, vector, ranked, skipped in SIMILAR:
        clause, rest = split(parse(query))
        assert clause is not None
        if vector is None:  # similar_to: the item's stored embedding
            vector = by_id[clause.value]["embedding"]
        filtered = translate(rest) if rest is not None else None
        knn = knn_query(clause, vector, filtered)
        response = es.search(index=item_index, query=knn, size=100)
        assert [hit["_id"] for hit in response["hits"]["hits"]] == ranked, query
        without = {"bool": {"must_not": [{"exists": {"field": "embedding"}}]}}
        if filtered is not None:
            without["bool"]["filter"] = [filtered]
        assert es.count(index=item_index, query=without)["count"] == skipped, query
