"""Golden files: query text -> exact Elasticsearch DSL (see ``golden_format``).

Also checks that every golden query renders to text that parses back to the same tree, and
(against a real node) that Elasticsearch accepts every golden DSL.
"""

from __future__ import annotations

import os

import pytest
from elasticsearch import Elasticsearch

from search import parse, render, translate
from tests.search.golden_format import (
    GOLDEN_DIR,
    GOLDEN_SLICES,
    all_cases,
    read_cases,
    write_cases,
)

CASES = all_cases()


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_translation_matches_golden(case) -> None:  # type: ignore[no-untyped-def]
    assert (
        translate(parse(case.query, slices=GOLDEN_SLICES), inner_hits=case.inner_hits) == case.dsl
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_golden_query_round_trips(case) -> None:  # type: ignore[no-untyped-def]
    tree = parse(case.query, slices=GOLDEN_SLICES)
    assert parse(render(tree)) == tree


@pytest.mark.es
def test_elasticsearch_accepts_every_golden_dsl(es: Elasticsearch, item_index: str) -> None:
    for case in CASES:
        query = translate(parse(case.query, slices=GOLDEN_SLICES), inner_hits=True)
        es.search(index=item_index, query=query, size=0)


if os.environ.get("AUTOTAG_UPDATE_GOLDEN"):

    def test_update_golden_files() -> None:
        for path in sorted(GOLDEN_DIR.glob("*.txt")):
            cases = read_cases(path)
            for case in cases:
                case.dsl = translate(
                    parse(case.query, slices=GOLDEN_SLICES), inner_hits=case.inner_hits
                )
            write_cases(path, cases)
