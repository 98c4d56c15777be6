"""Hostile query text, CI-sized: a few thousand generated cases plus the extremes.

``bench/fuzz_queries.py`` runs the same generators with 100,000+ cases.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from elasticsearch import Elasticsearch

from api.app import create_app
from api.settings import Settings
from harness.fuzzing import (
    SPECIAL_HTTP_CASES,
    Tally,
    cases,
    check_direct,
    dsl_violations,
    run_http,
    seed_queries,
)
from indexer.prediction_generator import generate
from search import QueryError, QuerySyntaxError, parse, translate
from store.writer import PredictionWriter
from tests.api.conftest import client_for

UNLIMITED = 10_000_000


def _report(tally: Tally) -> str:
    return json.dumps({"findings": tally.findings, "examples": tally.examples}, indent=1)


def test_generated_cases_parse_or_fail_cleanly() -> None:
    tally = Tally()
    for category, text in cases(3000, seed=20250101):
        check_direct(text, tally)
        if category == "huge":
            check_direct(text, tally, max_length=UNLIMITED)
    assert not tally.findings, _report(tally)
    assert tally.outcomes["accepted"] > 300  # the generator reaches past the first token
    assert sum(n for k, n in tally.outcomes.items() if k.startswith("rejected:")) > 1000


@pytest.mark.parametrize(
    "text",
    [
        "(" * 10_000 + "object_prefix:car" + ")" * 10_000,
        "(" * 10_000,
        ")" * 10_000,
        "NOT " * 10_000 + "object_prefix:car",
        "(NOT " * 5_000 + "object_prefix:car" + ")" * 5_000,
        " OR ".join(["object_prefix:car"] * 10_000),
        'object_prefix:"' + "\\" * 100_001 + '"',
    ],
    ids=["parens", "open", "close", "nots", "not-parens", "or-chain", "backslashes"],
)
def test_deep_and_huge_inputs_without_a_length_limit(text: str) -> None:
    tally = Tally()
    check_direct(text, tally, max_length=UNLIMITED)
    assert not tally.findings, _report(tally)


@pytest.mark.parametrize("text", ['object_prefix:"\ud800"', "\udfff", "object_prefix:car \udbff"])
def test_lone_surrogates_are_query_errors_with_a_position(text: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse(text)
    assert text[caught.value.start] in "\ud800\udfff\udbff"
    assert caught.value.end == caught.value.start + 1


def test_dsl_check_catches_forbidden_queries() -> None:
    assert dsl_violations({"bool": {"filter": [{"script": {"source": "1"}}]}})
    assert dsl_violations({"regexp": {"item_id": ".*"}})
    assert dsl_violations({"query_string": {"query": "x"}})
    assert dsl_violations({"term": {"_index": "x"}})
    assert not dsl_violations({"term": {"dataset": "x"}})
    # Known means mapped: ground truth's fields too, and nothing the mapping lacks.
    assert not dsl_violations({"term": {"truth_objects.label_prefixes": "car"}})
    assert dsl_violations({"term": {"truth_objects.score": 1}})
    # Counts use function_score, but never with functions (scripts, field values).
    assert dsl_violations({"function_score": {"functions": [{"script_score": {}}]}})
    assert dsl_violations({"function_score": {"field_value_factor": {"field": "score"}}})
    assert dsl_violations({"range": {"image_predictions.box_area": {"lt": 1}}})
    count = "count(object_prefix:car AND box_area < 1024) >= 2 AND NOT tagged_by = v3"
    assert not dsl_violations(translate(parse(count)))


def test_the_generator_starts_from_the_documented_and_golden_queries() -> None:
    seeds = seed_queries()
    assert len(seeds) > 150
    assert "count(object_prefix:car AND score >= 0.8) >= 3" in seeds
    assert any("\n" in seed and "tagged_by" in seed for seed in seeds)  # multi-line recipes


def test_harness_counts_a_query_error_as_a_rejection() -> None:
    """A sanity check of the harness itself: ``check_direct`` sees a QueryError as a rejection."""
    tally = Tally()
    check_direct("score >", tally)
    with pytest.raises(QueryError):
        parse("score >")
    assert tally.outcomes == {"rejected:missing_value": 1}


def test_http_layer_never_answers_5xx(es: Elasticsearch, es_url: str, item_index: str) -> None:
    PredictionWriter(es, item_index, training_set="model_v1", refresh=True).write(
        list(generate(60, seed=3))
    )
    texts = [text for _, text in cases(800, seed=7)] + list(SPECIAL_HTTP_CASES)
    tally = Tally()
    asyncio.run(run_http(Settings(es_url=es_url, index=item_index), texts, tally))
    assert not tally.findings, _report(tally)
    assert tally.outcomes["http 200"] > 50
    assert tally.outcomes["http 400 invalid_query"] > 300
    assert not any(k.startswith("http 5") for k in tally.outcomes)


def test_lone_surrogate_gets_the_error_envelope(es_url: str, item_index: str) -> None:
    async def post() -> httpx.Response:
        app = create_app(Settings(es_url=es_url, index=item_index))
        async with client_for(app, raise_app_exceptions=False) as client:
            return await client.post(
                "/v1/search",
                content=b'{"query": "object_prefix:\\"\\ud800\\""}',
                headers={"content-type": "application/json"},
            )

    response = asyncio.run(post())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_query"
    assert (error["details"]["start"], error["details"]["end"]) == (15, 16)
    assert error["details"]["query"] == 'object_prefix:"\ufffd"'
