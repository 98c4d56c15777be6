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
# A block's info string may name the sample set it runs on: ```query fleet
_BLOCK = re.compile(
    r"^```(query|query-error|similar|json)(?: (\w+))?\n(.*?)^```$", re.MULTILINE | re.DOTALL
)
_SAMPLES = re.compile(r"^<!-- sample-items(?:: (\w+))? -->\n```json\n(.*?)^```$", re.M | re.S)
DEFAULT_SET = "sample"


def _blocks(kind: str) -> list[tuple[str, str]]:
    """(sample set, body) of every block of ``kind``."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (name or DEFAULT_SET, body) for found, name, body in _BLOCK.findall(text) if found == kind
    ]


def _examples() -> list[tuple[str, str, set[str]]]:
    examples = []
    for sample_set, body in _blocks("query"):
        query, marker = body.rstrip("\n").rsplit("\n", 1)
        assert marker.startswith("# matches:"), body
        examples.append((sample_set, query, set(marker.removeprefix("# matches:").split())))
    return examples


def _sample_items() -> dict[str, list[dict[str, Any]]]:
    """Each sample set's items, prepared as every writer prepares them."""
    text = DOC.read_text(encoding="utf-8")
    return {
        name or DEFAULT_SET: [prepare_item(item) for item in json.loads(body)]
        for name, body in _SAMPLES.findall(text)
    }


def _sample_slices() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- sample-slices -->\n```json\n", 1)[1].split("```", 1)[0]
    slices: dict[str, str] = json.loads(body)
    return slices


def _similar_examples() -> list[tuple[str, list[float] | None, list[str], int]]:
    """(query, the text's vector if given, items in rank order, items skipped)."""
    examples = []
    for _, body in _blocks("similar"):  # on the default sample set
        query, *lines = body.rstrip("\n").split("\n")
        marks = dict(line.removeprefix("# ").split(": ", 1) for line in lines)
        vector = json.loads(marks["vector"]) if "vector" in marks else None
        examples.append((query, vector, marks["ranked"].split(), int(marks["skipped"])))
    return examples


EXAMPLES = _examples()
SIMILAR = _similar_examples()
ITEMS = _sample_items()
SLICES = _sample_slices()


def test_the_reference_has_examples() -> None:
    assert len(EXAMPLES) >= 70
    assert {name: len(items) for name, items in ITEMS.items()} == {"sample": 6, "fleet": 7}
    assert {sample_set for sample_set, _, _ in EXAMPLES} == set(ITEMS)
    ids = [item["item_id"] for items in ITEMS.values() for item in items]
    assert len(ids) == len(set(ids))
    assert len(SIMILAR) >= 5


@pytest.mark.parametrize(
    ("query", "vector", "ranked", "skipped"), SIMILAR, ids=[s[0] for s in SIMILAR]
)
def test_similar_example_with_evaluator(
    query: str, vector: list[float] | None, ranked: list[str], skipped: int
) -> None:
    answer = nearest(parse(query), ITEMS[DEFAULT_SET], vector)
    assert [item["item_id"] for item, _ in answer.hits] == ranked
    assert answer.skipped_without_embedding == skipped


@pytest.mark.parametrize(
    ("sample_set", "query", "expected"), EXAMPLES, ids=[q for _, q, _ in EXAMPLES]
)
def test_example_with_evaluator(sample_set: str, query: str, expected: set[str]) -> None:
    tree = parse(query, slices=SLICES)
    assert {item["item_id"] for item in ITEMS[sample_set] if evaluate(tree, item)} == expected


@pytest.mark.parametrize("body", [body for _, body in _blocks("query-error")])
def test_error_example(body: str) -> None:
    query, marker = body.rstrip("\n").rsplit("\n", 1)
    expected = getattr(search, marker.removeprefix("# error:").strip())
    with pytest.raises(QueryError) as caught:
        parse(query, slices=SLICES)
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
    for items in ITEMS.values():
        for item in items:
            operations += [{"index": {"_index": item_index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    for sample_set, query, expected in EXAMPLES:
        # The sets share the index; each example looks at its own set's items only.
        ids = {"ids": {"values": [item["item_id"] for item in ITEMS[sample_set]]}}
        body = {"bool": {"filter": [translate(parse(query, slices=SLICES)), ids]}}
        response = es.search(index=item_index, query=body, size=100)
        assert {hit["_id"] for hit in response["hits"]["hits"]} == expected, query
    by_id = {item["item_id"]: item for item in ITEMS[DEFAULT_SET]}
    in_set = {"ids": {"values": list(by_id)}}
    for query, vector, ranked, skipped in SIMILAR:
        clause, rest = split(parse(query))
        assert clause is not None
        if vector is None:  # similar_to: the item's stored embedding
            vector = by_id[clause.value]["embedding"]
        filters = [in_set] if rest is None else [in_set, translate(rest)]
        knn = knn_query(clause, vector, {"bool": {"filter": filters}})
        response = es.search(index=item_index, query=knn, size=100)
        assert [hit["_id"] for hit in response["hits"]["hits"]] == ranked, query
        without = {"bool": {"must_not": [{"exists": {"field": "embedding"}}], "filter": filters}}
        assert es.count(index=item_index, query=without)["count"] == skipped, query
